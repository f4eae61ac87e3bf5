"""Sweeps on Dask (handgrad.sweeps, `handgrad sweep`) and GridSearchCV over joblib's Dask backend.

One LocalCluster of 2 worker processes serves the whole module (starting one costs seconds): the Python
tests pass its client, the command line reaches it through --scheduler. The data are tiny.
"""

import csv
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import handgrad as hg
from handgrad import cli, datasets
from handgrad.errors import ConfigError
from handgrad.sweeps import combinations, halving_rungs, loguniform, randint, uniform

distributed = pytest.importorskip("distributed", reason="the sweep tests need handgrad[dask]")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  scheduler_kwargs={"dashboard": False}) as cluster, \
            distributed.Client(cluster) as dask_client:
        yield dask_client


def regression_data(n=160, seed=0):
    X, y = datasets.make_regression1d(n, noise=0.1, seed=seed)
    return X[: n * 3 // 4], y[: n * 3 // 4], X[n * 3 // 4:], y[n * 3 // 4:]


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


# ---------------------------------------------------------------------------- the trials and the rungs (no Dask)
def test_grid_is_every_combination_and_random_search_draws_distinct_ones():
    params = {"learning_rate": [0.01, 0.1, 1.0], "l2": [0.0, 1e-3]}
    grid = combinations(params)
    assert grid == [{"learning_rate": lr, "l2": l2} for lr in (0.01, 0.1, 1.0) for l2 in (0.0, 1e-3)]
    drawn = combinations(params, trials=4, seed=7)
    assert len(drawn) == 4 and all(d in grid for d in drawn)
    assert len({tuple(d.items()) for d in drawn}) == 4  # no combination twice
    assert combinations(params, trials=4, seed=7) == drawn  # seeded
    assert combinations(params, trials=4, seed=8) != drawn
    with pytest.raises(ConfigError, match="only 6 combinations"):
        combinations(params, trials=7)
    with pytest.raises(ConfigError, match=r"Did you mean 'learning_rate'\? Valid names: layers"):
        combinations({"learnig_rate": [0.1]})
    with pytest.raises(ConfigError, match="non-empty list"):
        combinations({"l2": []})


def test_random_search_draws_from_ranges():
    params = {"learning_rate": loguniform(1e-4, 1e-1), "units": randint(8, 10), "l2": uniform(0.0, 1e-3),
              "optimizer": ["sgd", "adam"]}
    drawn = combinations(params, trials=400, seed=0)
    assert drawn == combinations(params, trials=400, seed=0) and drawn != combinations(params, trials=400, seed=1)
    rates = np.array([d["learning_rate"] for d in drawn])
    assert rates.min() >= 1e-4 and rates.max() < 1e-1
    decades = np.histogram(np.log10(rates), bins=[-4, -3, -2, -1])[0]
    assert decades.min() > 80  # even on a log scale: ~133 per decade, where a uniform draw would put ~4 below 1e-3
    assert {d["units"] for d in drawn} == {8, 9, 10} and all(isinstance(d["units"], int) for d in drawn)
    assert all(0.0 <= d["l2"] < 1e-3 for d in drawn) and {d["optimizer"] for d in drawn} == {"sgd", "adam"}
    with pytest.raises(ConfigError, match=r"learning_rate is a range.*trials=N \(--trials N\)"):
        combinations({"learning_rate": loguniform(1e-4, 1e-1)})
    for bad in (lambda: loguniform(0.0, 1.0), lambda: uniform(2.0, 1.0), lambda: randint(1, 2.5)):
        with pytest.raises(ConfigError):
            bad()


def test_halving_rungs():
    assert halving_rungs(27, 1, 3) == [1, 3, 9]
    assert halving_rungs(100, eta=3) == [11, 33, 99]  # default first rung: epochs // eta^2
    assert halving_rungs(8, 1, 2) == [1, 2, 4]
    assert halving_rungs(5, 5, 3) == []
    with pytest.raises(ConfigError, match="eta"):
        halving_rungs(10, 1, 1)


def test_import_handgrad_does_not_import_dask_and_the_error_names_the_extra(monkeypatch):
    code = "import sys, handgrad; assert 'distributed' not in sys.modules and 'dask' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    from handgrad import sweeps

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    with pytest.raises(sweeps.SweepUnavailable, match=r"pip install handgrad\[dask\]"):
        hg.sweep(np.zeros((4, 1)), np.zeros(4), {"l2": [0.0]}, base={"layers": "1:identity"})


def test_a_trial_limits_its_blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from handgrad import sweeps

    def blas_threads():
        return [info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]

    before = blas_threads()
    assert before, "NumPy's BLAS is not visible to threadpoolctl"
    with sweeps._blas_limit(1):
        assert blas_threads() == [1] * len(before)
    assert blas_threads() == before


# ---------------------------------------------------------------------------- sweeps on the cluster
def test_a_grid_sweep_records_diverging_and_crashing_trials_and_stops_weak_ones(client, tmp_path):
    X, y, X_val, y_val = regression_data()
    params = {"learning_rate": [0.003, 0.03, 0.1, 1e4], "activation": ["relu", "nonsense"]}
    ended = []
    result = hg.sweep(X, y, params, base={"layers": "8:tanh,1:identity", "epochs": 9}, validation_data=(X_val, y_val),
                      min_epochs=1, eta=3, client=client, out=tmp_path, on_trial_end=lambda row, n: ended.append(row))
    assert result.rungs == [1, 3]
    by_trial = {row["trial"]: row for row in result.rows}
    assert len(by_trial) == 8 and sorted(row["trial"] for row in ended) == list(range(1, 9))
    # a crash inside a trial (an unknown activation) is recorded with its error
    crashed = [row for row in result.rows if row["activation"] == "nonsense"]
    assert {row["status"] for row in crashed} == {"failed"}
    assert all("nonsense" in row["error"] and row["val_loss"] is None for row in crashed)
    # the huge learning rate diverges: recorded, with the trainer's message
    diverged = [row for row in result.rows if row["learning_rate"] == 1e4 and row["activation"] == "relu"]
    assert diverged[0]["status"] == "diverged" and "became inf" in diverged[0]["error"]
    # successive halving: 3 trials reach rung 1, one goes on (ceil(3/3)), and it runs to epoch 9
    healthy = [row for row in result.rows if row["status"] in ("ok", "stopped early")]
    assert sorted(row["status"] for row in healthy) == ["ok", "stopped early", "stopped early"]
    survivor = next(row for row in healthy if row["status"] == "ok")
    assert survivor["epochs"] == 9
    for row in healthy:
        if row["status"] == "stopped early":
            assert row["epochs"] == 1
            assert row["val_loss"] >= result.curves[survivor["trial"]][0]  # it was worse at the rung
    # the files: every trial, sorted by the metric, failures last; the best model is the best row's
    rows = read_csv(tmp_path / "results.csv")
    assert [int(r["trial"]) for r in rows] == [row["trial"] for row in result.rows]
    assert list(rows[0]) == ["trial", "learning_rate", "activation", "status", "val_loss", "epochs", "seconds", "error"]
    values = [float(r["val_loss"]) for r in rows if r["val_loss"]]
    assert values == sorted(values) and len(values) == 3 and all(r["val_loss"] == "" for r in rows[3:])
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["metric"] == "val_loss" and record["counts"] == {"ok": 1, "stopped early": 2, "diverged": 1,
                                                                  "failed": 4}
    assert all(len(trial["curve"]) == trial["epochs"] for trial in record["trials"] if trial["status"] != "diverged")
    assert result.best["trial"] == survivor["trial"]
    best = hg.load(tmp_path / "best_model.npz")
    assert best.metadata["sweep"]["trial"] == survivor["trial"]
    assert best.loss(X_val, y_val) == pytest.approx(survivor["val_loss"], rel=1e-12)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_sweep_frees_the_data_it_sent_to_the_workers_when_it_returns(client):
    # Before, the scattered data stayed on the workers until garbage collection reached the driver, and were named
    # by their content: a second sweep of the same data could reuse the key while the first one's release was on
    # its way, and its trials then failed on "lost data" (seen once in CI).
    def scheduler_keys(dask_scheduler):
        return sorted(str(key) for key in dask_scheduler.tasks)

    X, y, X_val, y_val = regression_data(seed=3)
    before = client.run_on_scheduler(scheduler_keys)
    collecting = gc.isenabled()
    gc.disable()  # the release must not depend on a collection happening to run
    try:
        for _ in range(2):  # the same data twice in one client
            result = hg.sweep(X, y, {"batch_size": [8, 16]}, base={"layers": "4:tanh,1:identity", "epochs": 2},
                              validation_data=(X_val, y_val), halving=False, client=client)
            assert [row["status"] for row in result.rows] == ["ok", "ok"]
        deadline = time.monotonic() + 10
        while client.run_on_scheduler(scheduler_keys) != before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.run_on_scheduler(scheduler_keys) == before
    finally:
        if collecting:
            gc.enable()


def test_training_in_chunks_between_rungs_equals_one_uninterrupted_run(client):
    X, y, X_val, y_val = regression_data(seed=1)
    base = {"layers": "6:tanh,1:identity", "epochs": 6, "optimizer": "adam", "learning_rate": 0.01}
    chunked = hg.sweep(X, y, {"batch_size": [8, 16, 32]}, base=base, validation_data=(X_val, y_val), min_epochs=2,
                       eta=2, client=client)
    assert chunked.rungs == [2, 4]
    survivor = chunked.best
    assert survivor["status"] == "ok" and survivor["epochs"] == 6  # trained in 3 chunks, resumed twice
    whole = hg.sweep(X, y, {"batch_size": [survivor["batch_size"]]}, base=base, validation_data=(X_val, y_val),
                     halving=False, client=client)
    assert whole.curves[1] == chunked.curves[survivor["trial"]]  # bit for bit, every epoch
    np.testing.assert_array_equal(whole.best_model.params, chunked.best_model.params)
    # and the same training as net.fit in this process (to rounding: BLAS threads may differ here)
    net = hg.MLP(1, "6:tanh,1:identity", seed=0)
    history = net.fit(X, y, validation_data=(X_val, y_val), epochs=6, optimizer="adam", learning_rate=0.01,
                      batch_size=survivor["batch_size"], verbose=False)
    np.testing.assert_allclose(history.val_loss, whole.curves[1], rtol=1e-10)


def test_the_same_sweep_gives_the_same_table_on_one_worker(client):
    X, y, X_val, y_val = regression_data(seed=2)
    options = {"base": {"layers": "6:tanh,1:identity", "epochs": 4}, "validation_data": (X_val, y_val),
               "min_epochs": 1, "eta": 2}
    params = {"learning_rate": [0.01, 0.03, 0.1], "units": [3, 6]}
    two = hg.sweep(X, y, params, client=client, **options)
    one = hg.sweep(X, y, params, workers=1, **options)  # its own LocalCluster of one process

    def table(result):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in result.rows]

    assert table(one) == table(two) and one.curves == two.curves
    assert one.counts() == {"ok": 2, "stopped early": 4}  # rungs 1, 2: 6 -> 3 -> 2


def test_ctrl_c_cancels_pending_trials_and_keeps_the_finished_ones(client, tmp_path):
    X, y, X_val, y_val = regression_data()

    def interrupt(row, n_trials):
        raise KeyboardInterrupt  # what Ctrl-C does in the driver's wait

    result = hg.sweep(X, y, {"learning_rate": [0.01, 0.02, 0.03, 0.04]}, base={"layers": "4:tanh,1:identity",
                      "epochs": 3}, validation_data=(X_val, y_val), halving=False, client=client, out=tmp_path,
                      on_trial_end=interrupt)
    assert result.interrupted
    assert result.counts() == {"ok": 1, "cancelled": 3}
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["interrupted"] is True and [t["status"] for t in record["trials"]] == ["ok"] + ["cancelled"] * 3
    assert hg.load(tmp_path / "best_model.npz").metadata["sweep"]["trial"] == result.best["trial"]


def test_random_search_and_accuracy_metric(client):
    X, y = datasets.make_moons(200, seed=0)
    params = {"units": [2, 4, 8], "learning_rate": loguniform(0.05, 1.0)}
    result = hg.sweep(X, y, params, trials=3, seed=3, base={"layers": "8:tanh,1:sigmoid", "epochs": 3},
                      metric="val_accuracy", halving=False, client=client)
    assert len(result.rows) == 3 and result.goal == "max"
    drawn = combinations(params, trials=3, seed=3)
    assert sorted((row["units"], row["learning_rate"]) for row in result.rows) == \
        sorted((d["units"], d["learning_rate"]) for d in drawn)
    accuracies = [row["val_accuracy"] for row in result.rows]
    assert accuracies == sorted(accuracies, reverse=True) and all(0 <= a <= 1 for a in accuracies)
    assert result.best_model.layers[0].n_out == result.best["units"]  # units replaced the hidden width


# ---------------------------------------------------------------------------- the command line
def test_cli_sweep_end_to_end_on_the_cluster(client, tmp_path, capsys):
    config = tmp_path / "base.toml"
    config.write_text('[model]\nlayers = "8:tanh,1:sigmoid"\n[training]\nepochs = 4\n[output]\nout = "model.npz"\n')
    out = tmp_path / "sweep"
    argv = ["sweep", "--config", str(config), "--data", "moons", "--samples", "200", "--param",
            "learning_rate=0.05,0.5", "--param", "layers=8:tanh,1:sigmoid/4:relu,4:relu,1:sigmoid",
            "--scheduler", client.scheduler.address, "--out", str(out), "--no-plots", "--min-epochs", "2"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr()
    assert "4 trials" in printed.out and "best model:" in printed.out and "test (" in printed.out
    assert printed.err.count("trial ") == 4  # one progress line per trial
    rows = read_csv(out / "results.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok", "stopped early"}
    assert {r["layers"] for r in rows} == {"8:tanh,1:sigmoid", "4:relu,4:relu,1:sigmoid"}
    assert not (out / "curves.png").exists() and not (tmp_path / "model.npz").exists()
    best = hg.load(out / "best_model.npz")
    assert best.metadata["training"]["epochs"] == 4 and best.metadata["preprocessing"]["kind"]
    assert cli.main(["evaluate", str(out / "best_model.npz"), "--data", "moons", "--samples", "200"]) == 0
    # the same folder again needs --force
    assert cli.main(argv) == 2
    assert "already holds a sweep's results" in capsys.readouterr().err


def test_cli_ctrl_c_writes_the_finished_trials_and_exits_130(client, tmp_path):
    import os
    import signal
    import time

    out = tmp_path / "sweep"
    rates = ",".join(str(0.01 * k) for k in range(1, 21))
    command = [sys.executable, "-m", "handgrad", "sweep", "--data", "moons", "--samples", "400", "--layers",
               "16:tanh,1:sigmoid", "--epochs", "20", "--param", f"learning_rate={rates}", "--no-halving",
               "--no-plots", "--scheduler", client.scheduler.address, "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    deadline = time.monotonic() + 120
    while not (out / "results.json").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first trial has ended when the results file appears
    assert process.poll() is None, "the sweep ended before Ctrl-C: " + process.communicate()[1]
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted (Ctrl-C)" in stdout
    record = json.loads((out / "results.json").read_text())
    assert record["interrupted"] is True and len(record["trials"]) == 20
    assert record["counts"]["ok"] >= 1 and record["counts"]["cancelled"] >= 1
    assert set(record["counts"]) == {"ok", "cancelled"}
    assert (out / "best_model.npz").exists()


def test_ctrl_c_from_a_terminal_reaches_the_local_workers_too_and_they_do_not_die(tmp_path):
    """A terminal's Ctrl-C goes to the whole process group: the local cluster's workers ignore it, so no worker
    dies with a traceback and the driver alone cancels and writes the finished trials."""
    import os
    import signal
    import time

    out = tmp_path / "sweep"
    rates = ",".join(str(0.01 * k) for k in range(1, 21))
    command = [sys.executable, "-m", "handgrad", "sweep", "--data", "moons", "--samples", "1000", "--layers",
               "16:tanh,1:sigmoid", "--epochs", "30", "--param", f"learning_rate={rates}", "--no-halving",
               "--no-plots", "--workers", "2", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    deadline = time.monotonic() + 120
    while not (out / "results.json").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the sweep ended before Ctrl-C: " + process.communicate()[1]
    os.killpg(process.pid, signal.SIGINT)  # what a terminal does
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    record = json.loads((out / "results.json").read_text())
    assert record["interrupted"] is True and record["counts"]["ok"] >= 1


@pytest.mark.parametrize("extra, message", [
    (["--param", "learnng_rate=0.1"], "unknown sweep parameter 'learnng_rate'. Did you mean 'learning_rate'"),
    (["--param", "batch_size=8,x"], "--param batch_size: 'x' is not a whole number"),
    (["--param", "l2=0.1", "--param", "l2=0.2"], "given twice"),
    (["--param", "l2=0,,1"], "an empty value"),
    (["--param", "l2=0,1", "--trials", "3"], "only 2 combinations"),
    (["--param", "learning_rate=loguniform:0:1", "--trials", "3"], "a loguniform range needs low > 0"),
    (["--param", "learning_rate=loguniform:1e-3:1"], "give trials=N (--trials N)"),
    (["--param", "l2=0", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "Give one of the two"),
    (["--param", "l2=0", "--validation", "0"], "--validation must be above 0"),
    (["--param", "l2=0", "--epochs", "0"], "--epochs must be a positive whole number"),
    ([], "give at least one --param"),
])
def test_cli_sweep_bad_input_is_one_line_and_status_2(tmp_path, capsys, extra, message):
    status = cli.main(["sweep", "--data", "xor", "--samples", "40", "--out", str(tmp_path / "s"), *extra])
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- scikit-learn on Dask
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 15 epochs: on purpose
def test_grid_search_cv_over_joblib_dask_backend_matches_a_local_search(client):
    joblib = pytest.importorskip("joblib")
    pytest.importorskip("sklearn")
    from sklearn.model_selection import GridSearchCV

    from handgrad.sklearn import MLPClassifier

    X, y = datasets.make_moons(160, seed=1)
    grid = {"hidden_layer_sizes": [(4,), (8,)], "learning_rate_init": [0.01, 0.1]}

    def search():
        return GridSearchCV(MLPClassifier(max_iter=15, random_state=0, batch_size=32), grid, cv=2).fit(X, y)

    local = search()
    with distributed.get_task_stream(client) as stream, joblib.parallel_backend("dask"):
        on_dask = search()
    assert len(stream.data) >= 8  # 4 candidates x 2 folds ran as tasks on the cluster
    assert on_dask.best_params_ == local.best_params_
    np.testing.assert_array_equal(on_dask.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])


# ---------------------------------------------------------------------------- the throughput benchmark
def test_sweep_throughput_benchmark_reports_trials_per_minute(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import sweep_throughput

    rate = sweep_throughput.trials_per_minute(1, 2)
    assert isinstance(rate, float) and rate > 0


# ---------------------------------------------------------------------------- norm layers (issue 13)
def test_build_network_keeps_each_layers_norm_and_replaces_only_size_and_activation():
    from handgrad.sweeps import build_network

    net = build_network({"layers": "8:relu:batchnorm,6:tanh:layernorm,1:sigmoid", "units": 5, "activation": "elu"}, 2)
    assert [(layer.n_out, layer.activation.name, layer.norm and layer.norm.kind) for layer in net.layers] == \
        [(5, "elu", "batch"), (5, "elu", "layer"), (1, "sigmoid", None)]
    dicts = build_network({"layers": [{"size": 4, "activation": "relu", "norm": "batch"}, [1, "identity"]]}, 3)
    assert dicts.layers[0].norm.kind == "batch" and not dicts.layers[0].has_bias


def test_a_sweep_over_norm_layers_returns_the_best_model_with_its_running_statistics(client):
    X, y = datasets.make_moons(240, seed=3)
    params = {"layers": ["8:relu:batchnorm,1:sigmoid", "6:tanh:batchnorm,5:relu:layernorm,1:sigmoid"]}
    result = hg.sweep(X[:180], y[:180], params, client=client, validation_data=(X[180:], y[180:]),
                      base={"epochs": 3, "batch_size": 16, "learning_rate": 0.3}, halving=False)
    assert result.counts() == {"ok": 2}, result.rows
    best = result.best_model
    assert best.running_statistics()  # (both trials have batch norm)
    trial = min(result.rows, key=lambda row: row["val_loss"])
    retrained = hg.MLP(2, trial["layers"].split(","), seed=0)  # the trial again, in this process
    retrained.fit(X[:180], y[:180], validation_data=(X[180:], y[180:]), epochs=3, batch_size=16, learning_rate=0.3,
                  verbose=False)
    np.testing.assert_array_equal(best.params, retrained.params)
    for (name, mine), (_, theirs) in zip(best.running_statistics(), retrained.running_statistics()):
        np.testing.assert_array_equal(mine, theirs, err_msg=name)
    np.testing.assert_allclose(best.loss(X[180:], y[180:], batch_statistics=False), trial["val_loss"], rtol=1e-12)


# ---------------------------------------------------------------------------- one config for train and sweep
TRAIN_ONLY_CONFIG = """[model]
layers = "4:tanh,1:sigmoid"
[training]
epochs = 3
patience = 2
metrics = "accuracy"
class_weight = "balanced"
checkpoint = "run.ckpt"
resume = "run.ckpt"
init_from = "first.npz"
block_rows = 64
sharpness = true
sample_weight_column = "w"
[output]
out = "model.npz"
run_dir = "runs"
verbose = true
"""


def test_cli_sweep_takes_a_train_config_and_names_what_it_ignores_in_one_warning(client, tmp_path, capsys,
                                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)  # where train's outputs would go, were they not ignored
    X, y = datasets.make_dataset("moons", 120, seed=0)
    weights = np.linspace(0.5, 2.0, len(y))
    table = np.column_stack([X, weights, y])
    np.savetxt(tmp_path / "data.csv", table, delimiter=",", header="x0,x1,w,label", comments="")
    (tmp_path / "train.toml").write_text(TRAIN_ONLY_CONFIG)
    argv = ["sweep", "--config", "train.toml", "--csv", "data.csv", "--param", "learning_rate=0.1,0.5",
            "--no-halving", "--no-plots", "--scheduler", client.scheduler.address, "--out", "sweep", "--quiet"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("handgrad: warning:"), err
    for key in ("metrics", "class_weight", "checkpoint", "resume", "init_from", "block_rows", "sharpness",
                "sample_weight_column", "out", "run_dir", "verbose"):
        assert f" {key}" in err[0], key
    assert "patience" not in err[0]  # applied: per-trial early stopping (3 epochs are too few for patience 2 to stop)
    rows = read_csv(tmp_path / "sweep" / "results.csv")
    assert len(rows) == 2 and {row["epochs"] for row in rows} == {"3"}  # the shared settings apply
    best = hg.load(tmp_path / "sweep" / "best_model.npz")
    assert best.n_inputs == 2  # the weight column is no feature, as in train
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data.csv", "sweep", "train.toml"]


def test_cli_sweep_still_refuses_a_setting_neither_command_knows(tmp_path, capsys):
    (tmp_path / "train.toml").write_text('[training]\npatiense = 3\n')
    status = cli.main(["sweep", "--config", str(tmp_path / "train.toml"), "--data", "xor", "--samples", "40",
                       "--param", "l2=0", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert status == 2 and "unknown setting 'patiense'" in err and "patience" in err
    assert len(err.strip().splitlines()) == 1


def test_a_swept_epochs_keeps_its_own_column_beside_the_epochs_run(client, tmp_path):
    """The row's count of epochs run was written over a swept `epochs` value: results.csv had two `epochs`
    columns, both the epochs run, and a trial stopped at a rung showed its rung as its budget."""
    X, y, X_val, y_val = regression_data()
    result = hg.sweep(X, y, {"epochs": [1, 9], "learning_rate": [0.01, 0.02]}, base={"layers": "4:tanh,1:identity"},
                      validation_data=(X_val, y_val), min_epochs=1, eta=2, client=client, out=tmp_path, plot=False)
    assert result.parameters == ["epochs_budget", "learning_rate"]
    rows = read_csv(tmp_path / "results.csv")
    assert list(rows[0]) == ["trial", "epochs_budget", "learning_rate", "status", "val_loss", "epochs", "seconds",
                             "error"]
    budgets = {1: 1, 2: 1, 3: 9, 4: 9}  # the grid's order: epochs first
    assert {int(row["trial"]): int(row["epochs_budget"]) for row in rows} == budgets
    stopped = [row for row in rows if row["status"] == "stopped early" and row["epochs_budget"] == "9"]
    assert stopped and all(int(row["epochs"]) < 9 for row in stopped)
    record = json.loads((tmp_path / "results.json").read_text())
    assert {t["trial"]: t["epochs_budget"] for t in record["trials"]} == budgets


# ---------------------------------------------------------------------------- per-trial early stopping (patience)
PATIENCE_BASE = {"layers": "6:tanh,1:identity", "epochs": 12, "optimizer": "adam", "learning_rate": 0.1}


def test_patience_stops_a_chunked_trial_at_the_epoch_an_uninterrupted_run_stops(client):
    """Rungs at 3 and 6. batch_size 4: no new best at epochs 3 and 4, so patience 1 stops it at epoch 4, one
    epoch after a rung: only if the early-stopping state (one epoch without improvement) crossed the checkpoint.
    batch_size 8: no new best at the rung 6, survives both rungs, stops by patience at epoch 11."""
    X, y, X_val, y_val = regression_data(seed=1)
    params = {"batch_size": [4, 8, 16, 32]}
    chunked = hg.sweep(X, y, params, base=PATIENCE_BASE, validation_data=(X_val, y_val), min_epochs=3, eta=2,
                       patience=1, client=client, plot=False)
    whole = hg.sweep(X, y, params, base=PATIENCE_BASE, validation_data=(X_val, y_val), halving=False, patience=1,
                     client=client, plot=False)
    assert chunked.rungs == [3, 6] and whole.rungs == []
    rows, whole_rows = ({row["trial"]: row for row in r.rows} for r in (chunked, whole))
    assert rows[1]["status"] == "stopped (patience)" and rows[1]["epochs"] == 4
    assert rows[2]["status"] == "stopped (patience)" and rows[2]["epochs"] == 11  # trained in 3 chunks
    assert {rows[3]["status"], rows[4]["status"]} == {"stopped early"}  # the halving still ranks the others
    for trial in (1, 2):  # the same stop epoch, the same curve bit for bit, the same best epoch and model
        assert whole_rows[trial]["status"] == "stopped (patience)"
        assert whole_rows[trial]["epochs"] == rows[trial]["epochs"]
        assert chunked.curves[trial] == whole.curves[trial]
        assert rows[trial]["val_loss"] == whole_rows[trial]["val_loss"] == min(chunked.curves[trial])
    assert chunked.best["trial"] == whole.best["trial"] == 2
    np.testing.assert_array_equal(chunked.best_model.params, whole.best_model.params)
    # the same as net.fit(early_stopping=1) in this process (to rounding: BLAS threads may differ here)
    net = hg.MLP(1, "6:tanh,1:identity", seed=0)
    history = net.fit(X, y, validation_data=(X_val, y_val), epochs=12, optimizer="adam", learning_rate=0.1,
                      batch_size=8, early_stopping=1, verbose=False)
    assert len(history.epochs) == 11 and history.stop_reason.startswith("early stopping at epoch 11")
    np.testing.assert_allclose(history.val_loss, chunked.curves[2], rtol=1e-10)
    np.testing.assert_allclose(net.params, chunked.best_model.params, rtol=1e-10, atol=1e-13)  # the best epoch's
    assert np.argmin(chunked.curves[2]) + 1 < 11  # (so restore_best mattered)


def test_a_trial_that_stops_by_patience_is_not_halved_and_frees_its_rung(client):
    """Without patience the same sweep keeps the batch_size-4 trial to the rung 6 and halves there."""
    X, y, X_val, y_val = regression_data(seed=1)
    plain = hg.sweep(X, y, {"batch_size": [4, 8, 16, 32]}, base=PATIENCE_BASE, validation_data=(X_val, y_val),
                     min_epochs=3, eta=2, client=client, plot=False)
    assert "stopped (patience)" not in plain.counts()
    assert {row["trial"]: row["epochs"] for row in plain.rows}[1] >= 6
    with pytest.raises(ConfigError, match="patience"):
        hg.sweep(X, y, {"batch_size": [4]}, base=PATIENCE_BASE, validation_data=(X_val, y_val), patience=-1,
                 client=client, plot=False)


def test_cli_sweep_patience_from_the_flag_and_from_a_train_config(client, tmp_path, capsys):
    X, y, X_val, y_val = regression_data(seed=1)
    table = np.column_stack([np.concatenate([X, X_val]), np.concatenate([y, y_val])])
    np.savetxt(tmp_path / "data.csv", table, delimiter=",", header="x,y", comments="")
    (tmp_path / "train.toml").write_text("[training]\npatience = 0\n")
    common = ["sweep", "--csv", str(tmp_path / "data.csv"), "--target", "y", "--layers", "6:tanh,1:identity",
              "--epochs", "12", "--optimizer", "adam", "--lr", "0.1", "--param", "batch_size=4,8", "--no-halving",
              "--no-plots", "--scheduler", client.scheduler.address, "--quiet"]
    counts = {}
    for name, extra in (("flag", ["--patience", "0"]), ("config", ["--config", str(tmp_path / "train.toml")]),
                        ("off", [])):
        assert cli.main([*common, *extra, "--out", str(tmp_path / name)]) == 0, name
        record = json.loads((tmp_path / name / "results.json").read_text())
        counts[name] = record["counts"]
        rows = read_csv(tmp_path / name / "results.csv")
        for row in rows:
            curve = next(t["curve"] for t in record["trials"] if str(t["trial"]) == row["trial"])
            assert len(curve) == int(row["epochs"])
            if row["status"] == "stopped (patience)":  # patience 0: the first epoch without a new best ends it
                assert int(row["epochs"]) < 12 and curve[-1] >= min(curve[:-1])
                assert float(row["val_loss"]) == min(curve)
    assert counts["flag"] == counts["config"] and counts["flag"].get("stopped (patience)", 0) >= 1, counts
    best = hg.load(tmp_path / "flag" / "best_model.npz").metadata["sweep"]
    curve = next(t["curve"] for t in json.loads((tmp_path / "flag" / "results.json").read_text())["trials"]
                 if t["trial"] == best["trial"])
    assert best["best_epoch"] == int(np.argmin(curve)) + 1 and best["value"] == min(curve)
    assert "best_epoch" not in hg.load(tmp_path / "off" / "best_model.npz").metadata["sweep"]
    assert counts["off"] == {"ok": 2}
    assert "patience" not in capsys.readouterr().err  # the config's patience was applied, not named as ignored
    assert cli.main([*common, "--patience", "-1", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--patience" in err[0]
