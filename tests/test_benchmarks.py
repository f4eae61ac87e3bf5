"""The speed benchmark runs end to end on a tiny workload and reports every figure it promises.

No time is asserted (machines are noisy; the benchmark itself is the measure): only that each
contender was timed, the ratios are consistent with the times, and the memory probe worked.
"""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "epoch_speed.py"


def test_epoch_speed_runs_and_reports_every_figure():
    result = subprocess.run([sys.executable, str(SCRIPT), "--samples", "600", "--rounds", "1", "--batch-sizes", "128"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    cases = [(case["network"], case["optimizer"], case["batch_size"], case["dtype"]) for case in report["epochs"]]
    assert cases == [("784-256-128-10", "sgd", 128, "float32"), ("784-256-128-10", "sgd", 128, "float64"),
                     ("784-256-128-10", "adam", 128, "float32"), ("16-256-128-26", "adam", 128, "float32")]
    for case in report["epochs"]:
        assert case["samples"] == 600
        bound = case["bound"]["min_s"]
        for name in ("bound", "handgrad") + tuple(name for name in ("torch", "sklearn") if name in case):
            figures = case[name]
            assert 0 < figures["min_s"] <= figures["median_s"]
            assert abs(figures["ratio_to_bound"] - figures["min_s"] / bound) < 1e-9
    assert 0 < report["predict_products_us"] and 0 < report["predict_latency_us"]
    memory = report["fit_memory"]
    assert memory["peak_mb"] >= memory["rss_before_mb"] > 0
    assert "single-sample predict:" in result.stdout and "fit memory:" in result.stdout


def test_mnist_accuracy_contenders_run_on_a_tiny_stand_in():
    """The accuracy benchmark's handgrad contenders (the recipe, with and without batch norm) run end to end on
    random 28 x 28 'images' with one epoch: what they report is an accuracy in [0, 1] and a positive time."""
    import importlib.util

    import numpy as np

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "mnist_accuracy.py"
    spec = importlib.util.spec_from_file_location("mnist_accuracy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(0)
    X, y = rng.random((96, 784)), rng.integers(0, 10, 96)
    recipe = module.image_recipe(10, epochs=1)
    for norm in (None, "batch"):
        accuracy, seconds = module.run_handgrad_recipe(X, y, X[:20], y[:20], recipe=module.image_recipe(10, epochs=1),
                                                       norm=norm)
        assert 0.0 <= accuracy <= 1.0 and seconds > 0
    assert recipe["layers"][0] == (512, "relu")


SCALE = Path(__file__).resolve().parents[1] / "benchmarks" / "scale.py"


def test_scale_benchmark_reports_steps_sweeps_and_memory(tmp_path):
    result = subprocess.run([sys.executable, str(SCALE), "--quick", "--dir", str(tmp_path)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    runs = report["data_parallel"]
    if runs is not None:  # mpi4py and mpiexec present
        assert [run["ranks"] for run in runs] == [1, 2]
        for run in runs:
            assert run["gradient_bytes"] == 4 * run["parameters"]  # float32
            for step in run["steps"]:
                assert step["compute_ms"] > 0 and step["allreduce_ms"] >= 0
                assert abs(step["step_ms"] - step["compute_ms"] - step["wait_ms"] - step["allreduce_ms"]) < 1e-9
                assert 0 <= step["allreduce_share"] <= 1
        speedups = report["projection"]["rows"]
        assert all(0 < value < int(K) for row in speedups for K, value in row["speedup"].items())
    sweeps = report["sweeps"]
    assert "missing" in sweeps or (set(sweeps) == {"1", "2"} and all(rate > 0 for rate in sweeps.values()))
    memory = report["memory"]
    assert memory["mapped"]["rows"] == 8 * 2 ** 20 // 256 and memory["in_memory_subset"]["rows"] == 2 ** 20 // 256
    for figures in memory.values():
        assert figures["peak_rss_mb"] >= figures["rss_before_fit_mb"] > 0
    assert "(a) data-parallel step" in result.stdout and "(c) peak RSS" in result.stdout
    assert list(tmp_path.iterdir()) == []  # the generated data file is deleted


SKLEARN_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sklearn_datasets.py"


def test_sklearn_datasets_quick_run_reports_every_case():
    import pytest

    pytest.importorskip("sklearn")
    result = subprocess.run([sys.executable, str(SKLEARN_SCRIPT), "--quick"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["seeds"] == 1 and report["max_iter"] == 5 and report["blas_threads"] == 1
    cases = [(case["dataset"], case["solver"]) for case in report["cases"]]
    assert cases == [(name, solver) for name in ("digits", "breast_cancer", "wine", "iris", "diabetes")
                     for solver in ("adam", "sgd", "lbfgs")]
    for case in report["cases"]:
        ours, theirs = case["handgrad"], case["sklearn"]
        assert len(ours["scores"]) == len(theirs["scores"]) == 1
        assert ours["mean_seconds"] > 0 and theirs["mean_seconds"] > 0
        assert abs(case["time_ratio"] - ours["median_seconds"] / theirs["median_seconds"]) < 1e-9
        difference = 100 * (ours["mean_score"] - theirs["mean_score"])
        assert abs(case["score_difference_points"] - difference) < 1e-9
    assert report["within_one_point"] == sum(c["score_difference_points"] >= -1 for c in report["cases"])
    assert f"{case['dataset']:<14} {case['solver']:<6}" in result.stdout  # the table's last row
