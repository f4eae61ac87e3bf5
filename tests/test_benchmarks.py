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
