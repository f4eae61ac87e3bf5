"""Data-parallel training under ``mpiexec -n K`` is the same training as one process with the same global batch.

Tolerances (docs/scaling.md, "The same training"): with K = 1 the weights are bit-identical; with
K = 2 and 3 the shards' gradients are summed in another order than one matrix product sums the
rows, so float64 weights agree to 1e-12 and float32 weights to 2e-5 (absolute; the weights are O(1))
after 2-3 epochs of 7-13 steps (measured: 4e-16 and 6e-8). Dropout draws one stream per rank, so
K ranks are compared with a single-process reference that draws the same per-shard masks (the
objective they both descend).
Every rank must end with the same bits as rank 0.

The MPI runs go through tests/distributed_worker.py; they are skipped where mpi4py or mpiexec
(next to the Python executable, as the mpich wheel installs it) is missing.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import handgrad as hg
from handgrad.checkpoints import read_checkpoint
from handgrad.distributed import shard_bounds
from handgrad.optimizers import get_optimizer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import distributed_worker as worker  # noqa: E402

MPIEXEC = Path(sys.executable).parent / "mpiexec"
needs_mpi = pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None or not MPIEXEC.exists(),
                               reason="needs mpi4py and mpiexec: pip install handgrad[mpi]")

TRAINING = {"epochs": 3, "batch_size": 32, "optimizer": "adam", "learning_rate": 0.01, "sample_weight": True}
CASES = {
    # softmax + cross-entropy (closed form), Adam, sample weights, L2, clipping, validation, shuffling
    "adam64": {"problem": "classes", "dtype": "float64", "net": {"l2": 1e-3},
               "fit": {**TRAINING, "clip_norm": 1.0, "validation": True}},
    # identity + MSE (the general chain rule: the loss divides by the shard's N), momentum, L1
    "mse64": {"problem": "regression", "dtype": "float64", "net": {"l1": 1e-3},
              "fit": {"epochs": 3, "batch_size": 16, "optimizer": "momentum", "learning_rate": 0.05}},
    "adam32": {"problem": "classes", "dtype": "float32", "net": {"l2": 1e-3},
               "fit": {**TRAINING, "class_weight": "balanced"}},
    # dropout: one stream per rank
    "dropout64": {"problem": "classes", "dtype": "float64", "net": {"dropout": 0.3, "l2": 1e-3},
                  "fit": {**TRAINING, "shuffle": False}},
}
# every other optimizer (each reads only the summed gradient), two epochs, with a learning-rate schedule
OPTIMIZERS = ("sgd", "nesterov", "adamw", "rmsprop")
CASES.update({name: {"problem": "classes", "dtype": "float64",
                     "fit": {"epochs": 2, "batch_size": 24, "optimizer": name, "learning_rate": 0.02,
                             "schedule": "cosine"}} for name in OPTIMIZERS})
TOLERANCE = {"float64": 1e-12, "float32": 2e-5}


def mpirun(K, cases, tmp_path, timeout=120):
    """Run the worker on ``cases`` under mpiexec -n K; (completed process, results or None)."""
    tag = f"{K}-{abs(hash(json.dumps(cases, sort_keys=True)))}"
    spec, out = tmp_path / f"cases-{tag}.json", tmp_path / f"out-{tag}.npz"
    spec.write_text(json.dumps(cases))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([str(MPIEXEC), "-n", str(K), sys.executable, str(HERE / "distributed_worker.py"),
                           str(spec), str(out)], capture_output=True, text=True, timeout=timeout, env=env)
    return done, (dict(np.load(out)) if out.exists() else None)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if importlib.util.find_spec("mpi4py") is None or not MPIEXEC.exists():
        pytest.skip("needs mpi4py and mpiexec: pip install handgrad[mpi]")
    tmp_path = tmp_path_factory.mktemp("mpi")
    results = {}
    for K in (1, 2, 3):
        done, results[K] = mpirun(K, CASES, tmp_path)
        assert done.returncode == 0, done.stderr
    return results


def single_process(name):
    net, X, y, options = worker.build(CASES[name])
    net.fit(X, y, verbose=False, **options)
    return net.params


def sharded_reference(name, K):
    """One process descending what K ranks descend with dropout: per global batch, the sum over the shards
    of each shard's gradient (1/B, the penalty once), each shard's masks from its rank's stream."""
    net, X, y, options = worker.build(CASES[name])
    T, w, B = net.check_targets(y, len(X)), options["sample_weight"], options["batch_size"]
    streams = [net.rng] + [np.random.Generator(net.rng.bit_generator.jumped(r)) for r in range(1, K)]
    optimizer, total = get_optimizer(options["optimizer"]), np.empty_like(net.grads)
    for _ in range(options["epochs"]):
        for start in range(0, len(X), B):
            n = min(B, len(X) - start)
            total[...] = 0
            for r in range(K):
                lo, hi = shard_bounds(n, r, K)
                rows = slice(start + lo, start + hi)
                with net.dropout_stream(streams[r]):
                    net.backprop(X[rows], T[rows], w[rows], training=True, n_total=n, penalty=r == 0)
                total += net.grads
            optimizer.step(net.params, total, options["learning_rate"])
    return net.params


# ---------------------------------------------------------------------------- without MPI
def test_shards_cover_the_batch_and_rank_0_is_never_empty():
    for n in (1, 2, 5, 11, 32):
        for K in (1, 2, 3, 4):
            bounds = [shard_bounds(n, r, K) for r in range(K)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n and bounds[0][1] > 0
            assert all(bounds[r][1] == bounds[r + 1][0] for r in range(K - 1))
            sizes = [hi - lo for lo, hi in bounds]
            assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("problem", ["classes", "regression"])
def test_the_shards_gradients_sum_to_the_batch_gradient(problem):
    X, y, layers = worker.problem(problem, "float64")
    net = hg.MLP(5, layers, l2=0.01, l1=0.003, seed=2)
    T = net.check_targets(y[:30], 30)
    w = np.linspace(0.5, 2.0, 30)
    J = net.backprop(X[:30], T, w, training=False)
    whole = net.grads.copy()
    total, J_sum = np.zeros_like(whole), 0.0
    for r in range(3):
        lo, hi = shard_bounds(30, r, 3)
        J_sum += net.backprop(X[lo:hi], T[lo:hi], w[lo:hi], training=False, n_total=30, penalty=r == 0)
        total += net.grads
    np.testing.assert_allclose(total, whole, rtol=1e-13, atol=1e-15)
    assert J_sum == pytest.approx(J, rel=1e-14)


def test_without_mpi4py_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    X, y, layers = worker.problem("classes", "float64")
    net = hg.MLP(5, layers, seed=0)
    with pytest.raises(hg.ConfigError, match=r"pip install handgrad\[mpi\]"):
        net.fit(X, y, epochs=1, distributed=True, verbose=False)
    with pytest.raises(hg.ConfigError, match="an mpi4py communicator"):
        net.fit(X, y, epochs=1, distributed="world", verbose=False)



@needs_mpi
def test_a_batch_norm_that_does_not_sum_over_the_ranks_is_refused_with_a_clear_error():
    """handgrad's BatchNorm takes its sums over the ranks; a subclass with a forward of its own would normalize by
    its shard's statistics: refused before any step (run in a child process, so that this process never
    initializes MPI)."""
    code = ("import numpy as np, handgrad as hg\n"
            "from handgrad.layers import BatchNorm\n"
            "class OwnForward(BatchNorm):\n"
            "    def forward(self, X, training=False):\n"
            "        return super().forward(X, training)\n"
            "net = hg.MLP(3, ['8:relu:batchnorm', '1:sigmoid'], seed=0)\n"
            "net.layers[0].norm.__class__ = OwnForward\n"
            "X = np.random.default_rng(0).normal(size=(32, 3)); y = (X[:, 0] > 0).astype(float)\n"
            "before = net.params.copy()\n"
            "try:\n"
            "    net.fit(X, y, epochs=1, distributed=True, verbose=False)\n"
            "except hg.ConfigError as error:\n"
            "    print('refused:', error, np.array_equal(before, net.params))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "refused: layer 1's normalization (OwnForward) computes statistics over the batch but not" in result.stdout
    assert result.stdout.strip().endswith("True")  # no step was taken


# ---------------------------------------------------------------------------- under mpiexec
@needs_mpi
@pytest.mark.parametrize("name", ["adam64", "mse64", "adam32", "dropout64", *OPTIMIZERS])
def test_one_rank_is_bit_identical_to_one_process(runs, name):
    assert np.array_equal(runs[1][name], single_process(name))


@needs_mpi
@pytest.mark.parametrize("K", [2, 3])
@pytest.mark.parametrize("name", ["adam64", "mse64", "adam32", *OPTIMIZERS])
def test_k_ranks_equal_one_process_with_the_same_global_batch(runs, K, name):
    expected = single_process(name)
    got = runs[K][name]
    assert np.abs(got - expected).max() <= TOLERANCE[CASES[name]["dtype"]]
    assert np.abs(expected).max() > 0.1  # the weights are O(1): the tolerance is a relative one too
    every_rank = runs[K][name + "/ranks"]
    assert all(np.array_equal(every_rank[0], params) for params in every_rank)
    assert np.array_equal(every_rank[0], got)


@needs_mpi
@pytest.mark.parametrize("K", [2, 3])
def test_dropout_with_a_stream_per_rank_equals_the_sharded_reference(runs, K):
    got = runs[K]["dropout64"]
    assert np.abs(got - sharded_reference("dropout64", K)).max() <= TOLERANCE["float64"]
    # the reference is not the single-process run: rank r > 0 draws other masks than one process would
    assert np.abs(got - single_process("dropout64")).max() > 1e-6
    assert np.abs(sharded_reference("dropout64", 1) - single_process("dropout64")).max() == 0


@needs_mpi
def test_resume_with_the_same_ranks_is_bit_identical_and_other_ranks_are_refused(tmp_path):
    path = str(tmp_path / "run.ckpt")
    base = {**CASES["dropout64"], "fit": {**CASES["dropout64"]["fit"], "shuffle": True, "epochs": 4}}
    first = {**base, "fit": {**base["fit"], "epochs": 2, "checkpoint": path}}
    second = {**base, "fit": {**base["fit"], "checkpoint": path, "resume": True}}
    done, results = mpirun(2, {"whole": base, "first": first, "second": second}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert np.array_equal(results["whole"], results["second"])
    assert read_checkpoint(path)["distributed"]["ranks"] == 2
    net, X, y, options = worker.build(second)
    with pytest.raises(hg.ConfigError, match="written by 2 ranks; resume it under mpiexec -n 2"):
        net.fit(X, y, verbose=False, **{**options, "epochs": 5})  # one process, no MPI
    done, _ = mpirun(3, {"again": second}, tmp_path)
    assert done.returncode != 0
    assert "written by 2 rank(s); resume it with the same number (mpiexec -n 2), not 3" in done.stderr


@needs_mpi
def test_ctrl_c_on_one_rank_stops_every_rank_at_the_same_step_and_resumes_exactly(tmp_path):
    path = str(tmp_path / "run.ckpt")
    base = {**CASES["dropout64"], "fit": {**CASES["dropout64"]["fit"], "shuffle": True}}
    stopped = {**base, "fit": {**base["fit"], "checkpoint": path}, "interrupt_on_rank": [1, 2, 3]}
    resumed = {**base, "fit": {**base["fit"], "checkpoint": path, "resume": True}}
    done, results = mpirun(2, {"whole": base, "stopped": stopped, "resumed": resumed}, tmp_path)
    assert done.returncode == 0, done.stderr
    # rank 1's flag travels with the next step's sum: both ranks stop after batch 4 of epoch 2
    assert list(results["stopped/stop_reasons"]) == ["interrupted (Ctrl-C) at epoch 2, batch 4"] * 2
    assert np.array_equal(results["whole"], results["resumed"])


@needs_mpi
@pytest.mark.parametrize("shuffle", [False, True])
def test_streamed_data_under_mpi_equals_one_process(tmp_path, shuffle):
    X, y, _ = worker.problem("classes", "float64")
    paths = [str(tmp_path / "X.npy"), str(tmp_path / "y.npy")]
    np.save(paths[0], X)
    np.save(paths[1], y)
    case = {**CASES["adam64"], "fit": {**CASES["adam64"]["fit"], "shuffle": shuffle, "block_rows": 50},
            "npy": paths}
    done, results = mpirun(2, {"streamed": case}, tmp_path)
    assert done.returncode == 0, done.stderr
    # one process: streamed too when shuffling (the block-wise order), in memory otherwise (the same batches)
    net, X_s, y_s, options = worker.build(case if shuffle else {k: v for k, v in case.items() if k != "npy"})
    net.fit(X_s, y_s, verbose=False, **options)
    assert np.abs(results["streamed"] - net.params).max() <= TOLERANCE["float64"]


@needs_mpi
def test_a_failing_rank_ends_the_job_without_a_half_written_file(tmp_path):
    model, checkpoint = tmp_path / "model.npz", tmp_path / "run.ckpt"
    case = {**CASES["adam64"], "fit": {**CASES["adam64"]["fit"], "epochs": 4, "checkpoint": str(checkpoint)},
            "fail_on_rank": 1, "out": str(model)}
    done, results = mpirun(2, {"failing": case}, tmp_path, timeout=60)
    assert done.returncode != 0 and results is None
    assert "handgrad: rank 1 of 2 failed: RuntimeError: deliberate failure on rank 1" in done.stderr
    assert not model.exists()
    assert read_checkpoint(checkpoint)["epochs_done"] == 1  # epoch 1's checkpoint, whole; epoch 2's never written
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(("cases-", "out-"))) == ["run.ckpt"]


@needs_mpi
def test_a_callback_that_stops_on_one_rank_stops_every_rank(tmp_path):
    """Without one decision for all, rank 1 would stop and rank 0 wait in the next Allreduce forever."""
    case = {**CASES["adam64"], "stop_on_rank": 1, "fit": {**CASES["adam64"]["fit"], "epochs": 4}}
    done, results = mpirun(2, {"stop": case}, tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert list(results["stop/stop_reasons"]) == ["stopped by StopOn at epoch 2 (on rank 1)"] * 2
    assert len(results["stop/loss"]) == 2
    assert np.array_equal(results["stop/ranks"][0], results["stop/ranks"][1])


@needs_mpi
def test_a_network_without_a_seed_starts_from_rank_0s_weights_and_different_data_is_refused(tmp_path):
    """Unseeded, every rank draws other initial weights (and seeds): rank 0's are sent to all, so the ranks train
    one network; ranks holding different numbers of rows would take different numbers of steps: refused."""
    unseeded = {**CASES["adam64"], "unseeded": True, "fit": {**CASES["adam64"]["fit"], "epochs": 2}}
    done, results = mpirun(2, {"unseeded": unseeded}, tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    every_rank = results["unseeded/ranks"]
    assert np.array_equal(every_rank[0], every_rank[1])
    short = {**CASES["adam64"], "short_on_rank": 1}
    done, results = mpirun(2, {"short": short}, tmp_path, timeout=60)
    assert done.returncode != 0 and results is None
    assert "the ranks hold different data (rank 0: 203 samples, rank 1: 202 samples)" in done.stderr


@needs_mpi
@pytest.mark.parametrize("layers, K, epochs", [("8:tanh,1:sigmoid", 2, 4), ("8:tanh:batchnorm,1:sigmoid", 3, 3)],
                         ids=["plain-2-ranks", "batch-norm-3-ranks"])
def test_the_command_line_under_mpiexec_trains_like_one_process(tmp_path, layers, K, epochs):
    flags = ["train", "--data", "moons", "--samples", "300", "--layers", layers, "--epochs", str(epochs),
             "--optimizer", "adam", "--learning-rate", "0.01"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "handgrad", *flags]
    one = subprocess.run([*command, "--out", str(tmp_path / "one.npz"), "--quiet"], capture_output=True, text=True,
                         env=env, timeout=120)
    many = subprocess.run([str(MPIEXEC), "-n", str(K), *command, "--distributed", "--out", str(tmp_path / "K.npz")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert one.returncode == 0 and many.returncode == 0, one.stderr + many.stderr
    assert many.stdout.count("model written to") == 1  # rank 0 alone prints and writes
    first, second = hg.load(tmp_path / "one.npz"), hg.load(tmp_path / "K.npz")
    assert np.abs(first.params - second.params).max() <= 1e-12
    for (name, a), (_, b) in zip(first.running_statistics(), second.running_statistics(), strict=True):
        assert np.abs(a - b).max() <= 1e-12, name  # (batch norm: the running statistics too)
    assert len(first.running_statistics()) == (2 if "batchnorm" in layers else 0)


# ---------------------------------------------------------------------------- bad input under mpiexec: one line
class _FakeComm:
    """Rank ``rank`` of a group whose other ranks' prepare ended as ``others`` (None, an error or "crashed")."""

    def __init__(self, rank, others):
        self.rank, self.others, self.aborted = rank, list(others), None

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return len(self.others) + 1

    def allgather(self, mine):
        import pickle

        return pickle.loads(pickle.dumps([*self.others[:self.rank], mine, *self.others[self.rank:]]))

    def Abort(self, code):
        self.aborted = code


def test_prepare_together_agrees_on_every_ranks_outcome():
    from handgrad.distributed import prepare_together

    assert prepare_together(_FakeComm(0, [None, None]), lambda: 42) == (42, None)
    # another rank's bad input: no result anywhere, the error names that rank
    result, error = prepare_together(_FakeComm(0, [None, hg.DataError("no such file")]), lambda: 42)
    assert result is None and isinstance(error, hg.DataError) and str(error) == "on rank 2 of 3: no such file"
    missing = FileNotFoundError(2, "No such file or directory", "x.csv")
    _, error = prepare_together(_FakeComm(0, [missing]), lambda: 42)
    assert isinstance(error, FileNotFoundError) and error.strerror == "on rank 1 of 2: No such file or directory"
    # this rank's own: the error object itself (its traceback), the first failing rank's on every rank
    own = hg.ConfigError("--epochs must be a positive integer")

    def fails():
        raise own

    assert prepare_together(_FakeComm(0, [hg.DataError("later")]), fails) == (None, own)
    assert str(prepare_together(_FakeComm(1, [hg.DataError("first")]), lambda: 1)[1]) == "first"
    # a bug on another rank: that rank aborts the job; here nothing to report
    assert prepare_together(_FakeComm(0, ["crashed"]), lambda: 1) == (None, None)
    comm = _FakeComm(1, [None])

    def bug():
        raise TypeError("a bug")

    with pytest.raises(TypeError, match="a bug"):
        prepare_together(comm, bug)
    assert comm.aborted == 2


def _mpi_train(K_commands, tmp_path):
    """mpiexec with one command line per group of ranks (MPMD: 'mpiexec -n 1 A : -n 1 B')."""
    line = [str(MPIEXEC)]
    for K, flags in K_commands:
        line += [":"] * (len(line) > 1) + ["-n", str(K), sys.executable, "-m", "handgrad", "train", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(line, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)


@needs_mpi
def test_bad_input_under_mpiexec_is_one_line_and_exit_status_2(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    rows = "".join(f"{a},{b},{int(a > 0)}\n" for a, b in X)
    (tmp_path / "good.csv").write_text("a,b,label\n" + rows)
    (tmp_path / "bad.csv").write_text("a,b,label\n" + rows + "1.0,oops,1\n")
    flags = ["--target", "label", "--layers", "4:tanh,1:sigmoid", "--epochs", "2", "--distributed", "--out", "m.npz"]
    cases = {  # (ranks, flags) groups -> the one line rank 0 prints
        "every rank": ([(2, ["--csv", "missing.csv", *flags])], "handgrad: error: CSV file 'missing.csv' does not"),
        "rank 1 alone": ([(1, ["--csv", "good.csv", *flags]), (1, ["--csv", "missing.csv", *flags])],
                         "handgrad: error: on rank 1 of 2: CSV file 'missing.csv' does not exist"),
        "rank 2 of 3": ([(2, ["--csv", "good.csv", *flags]), (1, ["--csv", "bad.csv", *flags])],
                        "handgrad: error: on rank 2 of 3: 'bad.csv' line 62, column 2: 'oops' is not a number"),
        "rank 0 alone": ([(1, ["--csv", "bad.csv", *flags]), (1, ["--csv", "good.csv", *flags])],
                         "handgrad: error: 'bad.csv' line 62"),
    }
    for name, (groups, line) in cases.items():
        done = _mpi_train(groups, tmp_path)
        assert done.returncode == 2, (name, done.stderr)
        assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(line), (name, done.stderr)
        assert not (tmp_path / "m.npz").exists() and done.stdout == ""
    # rank 0 alone refuses to replace a model file (the other ranks write none): one line, the file untouched
    (tmp_path / "m.npz").write_bytes(b"earlier")
    done = _mpi_train([(2, ["--csv", "good.csv", *flags])], tmp_path)
    assert done.returncode == 2 and done.stderr == ("handgrad: error: model file 'm.npz' already exists; pass --force "
                                                    "to replace it, or choose another name.\n")
    assert (tmp_path / "m.npz").read_bytes() == b"earlier"
    # the same command with good input trains (and a failure while training still ends the job, as above)
    done = _mpi_train([(2, ["--csv", "good.csv", *flags, "--force", "--quiet"])], tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert hg.load(tmp_path / "m.npz").n_inputs == 2


# ---------------------------------------------------------------------------- synchronized batch norm
# Batch norm normalizes by the global batch's statistics, summed over the ranks (docs/derivations.md, "Batch norm
# over K processes"): the same training as one process, weights and running statistics both. The cases join
# CASES, so the one mpiexec run per K of the `runs` fixture trains them too.
BN_TRAINING = {"epochs": 3, "batch_size": 32, "optimizer": "adam", "learning_rate": 0.01, "sample_weight": True}
BN_CASES = {
    # two batch norms and a layer norm, Adam, sample weights, L2, clipping, validation, shuffling
    "bn64": {"problem": "classes", "dtype": "float64", "net": {"l2": 1e-3},
             "layers": ["8:tanh:batchnorm", "6:relu:layernorm", "5:relu:batchnorm", [3, "softmax"]],
             "fit": {**BN_TRAINING, "clip_norm": 1.0, "validation": True}},
    # 203 = 3 * 67 + 2: the last batch has 2 rows, so with K = 3 rank 2 holds none (it still takes part in the sums)
    "bn_idle": {"problem": "regression", "dtype": "float64", "layers": ["8:tanh:batchnorm", [2, "identity"]],
                "fit": {"epochs": 2, "batch_size": 67, "optimizer": "momentum", "learning_rate": 0.05}},
    # 203 = 2 * 101 + 1: the lone last sample joins the batch before (102 rows), on every rank alike
    "bn_merge": {"problem": "classes", "dtype": "float64", "layers": ["8:relu:batchnorm", [3, "softmax"]],
                 "fit": {"epochs": 3, "batch_size": 101, "optimizer": "sgd", "learning_rate": 0.1}},
    "bn32": {"problem": "classes", "dtype": "float32", "layers": ["8:tanh:batchnorm", [3, "softmax"]],
             "fit": {**BN_TRAINING, "class_weight": "balanced"}},
    # layer norm alone: per sample, nothing to synchronize
    "ln64": {"problem": "classes", "dtype": "float64", "layers": ["8:tanh:layernorm", [3, "softmax"]],
             "fit": BN_TRAINING},
    # dropout: one stream per rank, against the per-shard reference with the global batch's norms
    "bn_dropout64": {"problem": "classes", "dtype": "float64", "net": {"dropout": 0.3},
                     "layers": ["8:tanh:batchnorm", "6:relu:batchnorm", [3, "softmax"]],
                     "fit": {**BN_TRAINING, "shuffle": False}},
}
CASES.update(BN_CASES)
BN_NAMES = [name for name in BN_CASES if name != "bn_dropout64"]


def single_process_with_running(name):
    net, X, y, options = worker.build(CASES[name])
    net.fit(X, y, verbose=False, **options)
    return net.params, worker.running_statistics(net)


def sharded_batch_norm_reference(name, K):
    """One process descending what K ranks descend with dropout and batch norm: per global batch, K threads (the
    ranks, tests/test_sync_batchnorm.py) each run its shard with its rank's dropout stream and the global batch's
    norm statistics; the sum of their gradients takes the step, and the global statistics are committed."""
    from test_sync_batchnorm import on_threads

    from handgrad.layers import OBJECTIVE_WITH_DROPOUT

    net, X, y, options = worker.build(CASES[name])
    T, w, B = net.check_targets(y, len(X)), options["sample_weight"], options["batch_size"]
    streams = [net.rng] + [np.random.Generator(net.rng.bit_generator.jumped(r)) for r in range(1, K)]
    ranks = [net] + [net.copy() for _ in range(1, K)]
    optimizer = get_optimizer(options["optimizer"])
    for _ in range(options["epochs"]):
        for start in range(0, len(X), B):
            n = min(B, len(X) - start)

            def shard(r, reduce, start=start, n=n):
                lo, hi = shard_bounds(n, r, K)
                rows, mine = slice(start + lo, start + hi), ranks[r]
                mine.params[...] = net.params
                with mine.dropout_stream(streams[r]), mine.synchronized_batch_norm(reduce if K > 1 else None):
                    mine.backprop(X[rows], T[rows], w[rows], training=OBJECTIVE_WITH_DROPOUT, n_total=n,
                                  penalty=r == 0)
                return mine.grads.copy()

            grads = on_threads(K, shard)
            net.update_running_statistics()  # rank 0's statistics: the global batch's
            optimizer.step(net.params, sum(grads[1:], grads[0].copy()), options["learning_rate"])
    return net.params, worker.running_statistics(net)


@needs_mpi
@pytest.mark.parametrize("name", list(BN_CASES))
def test_batch_norm_on_one_rank_is_bit_identical_to_one_process(runs, name):
    params, running = single_process_with_running(name)
    assert np.array_equal(runs[1][name], params)
    assert np.array_equal(runs[1][name + "/running"][0], running)


@needs_mpi
@pytest.mark.parametrize("K", [2, 3])
@pytest.mark.parametrize("name", BN_NAMES)
def test_synchronized_batch_norm_on_k_ranks_equals_one_process(runs, K, name):
    """Weights AND running statistics, to rounding; every rank holds the same bits of both."""
    params, running = single_process_with_running(name)
    tolerance = TOLERANCE[CASES[name]["dtype"]]
    assert np.abs(runs[K][name] - params).max() <= tolerance
    assert np.abs(params).max() > 0.1
    if name != "ln64":
        assert np.abs(runs[K][name + "/running"][0] - running).max() <= tolerance * max(1.0, np.abs(running).max())
        assert np.abs(running - worker.running_statistics(worker.build(CASES[name])[0])).max() > 0.01  # they moved
    every_rank, every_running = runs[K][name + "/ranks"], runs[K][name + "/running"]
    assert all(np.array_equal(every_rank[0], theirs) for theirs in every_rank)
    assert all(np.array_equal(every_running[0], theirs) for theirs in every_running)


@needs_mpi
@pytest.mark.parametrize("K", [2, 3])
def test_batch_norm_with_dropout_equals_the_sharded_reference(runs, K):
    params, running = sharded_batch_norm_reference("bn_dropout64", K)
    assert np.abs(runs[K]["bn_dropout64"] - params).max() <= TOLERANCE["float64"]
    assert np.abs(runs[K]["bn_dropout64/running"][0] - running).max() <= TOLERANCE["float64"]
    # the reference is not the single-process run (rank r > 0 draws other masks), and with K = 1 it is
    assert np.abs(params - single_process_with_running("bn_dropout64")[0]).max() > 1e-6
    one_rank = sharded_batch_norm_reference("bn_dropout64", 1)[0]
    assert np.array_equal(one_rank, single_process_with_running("bn_dropout64")[0])


@needs_mpi
def test_batch_norm_resumes_bit_identically_with_the_same_ranks(tmp_path):
    """The checkpoint holds rank 0's running statistics, which are every rank's: a resumed run is the same bits."""
    path = str(tmp_path / "run.ckpt")
    base = {**CASES["bn_dropout64"], "fit": {**CASES["bn_dropout64"]["fit"], "shuffle": True, "epochs": 4}}
    first = {**base, "fit": {**base["fit"], "epochs": 2, "checkpoint": path}}
    second = {**base, "fit": {**base["fit"], "checkpoint": path, "resume": True}}
    done, results = mpirun(3, {"whole": base, "first": first, "second": second}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert np.array_equal(results["whole"], results["second"])
    assert np.array_equal(results["whole/running"], results["second/running"])
    assert not np.array_equal(results["first/running"], results["second/running"])  # epochs 3-4 moved them


# ---------------------------------------------------------------------------- bad input fit finds: every rank stops
# Before its first step, fit sets up in parts that every rank runs, and the ranks agree on how each ended
# (distributed.together): bad input found there (the settings, a checkpoint of another run or of another number
# of ranks, ranks holding different data) stops every rank with the same error, without MPI Abort; the command
# line prints it once and exits with 2.
def _no_abort(stderr):
    return "Abort" not in stderr and "abort" not in stderr


@needs_mpi
def test_fit_raises_the_same_error_on_every_rank_without_abort(tmp_path):
    path, cosine, blocks = (str(tmp_path / name) for name in ("run.ckpt", "cosine.ckpt", "blocks.ckpt"))
    X, y, _ = worker.problem("classes", "float64")
    npy = [str(tmp_path / "X.npy"), str(tmp_path / "y.npy")]
    np.save(npy[0], X)
    np.save(npy[1], y)
    base = {**CASES["adam64"], "fit": {**CASES["adam64"]["fit"], "epochs": 2}}
    written = {  # three runs of 2 epochs, each checkpointed: plain, with a cosine schedule, streamed in blocks of 50
        "written": {**base, "fit": {**base["fit"], "checkpoint": path}},
        "cosine": {**base, "fit": {**base["fit"], "checkpoint": cosine, "schedule": "cosine"}},
        "blocks": {**base, "npy": npy, "fit": {**base["fit"], "checkpoint": blocks, "block_rows": 50}},
    }
    done, _ = mpirun(2, written, tmp_path)
    assert done.returncode == 0, done.stderr
    saved = [Path(name).read_bytes() for name in (path, cosine, blocks)]
    cases = {  # name -> (case, ranks, the error every rank raises)
        "settings": ({**base, "fit": {**base["fit"], "epochs": 0}}, 2, "ConfigError: epochs must be a positive"),
        "one rank's settings": ({**base, "fit_on_rank": [1, {"optimizer": "adagrad"}]}, 2,
                                "ConfigError: on rank 1 of 2: unknown optimizer"),
        "data sizes": ({**base, "short_on_rank": 1}, 2, "ConfigError: the ranks hold different data (rank 0: 203 "
                       "samples, rank 1: 202 samples)"),
        "ranks": ({**base, "fit": {**base["fit"], "epochs": 3, "checkpoint": path, "resume": True}}, 3,
                  "ConfigError: the checkpoint was written by 2 rank(s); resume it with the same number (mpiexec -n "
                  "2), not 3."),
        "other data": ({**base, "x_scale": 2.0,
                        "fit": {**base["fit"], "epochs": 3, "checkpoint": path, "resume": True}}, 2,
                       "ConfigError: the checkpoint was made on other training data"),
        "another network": ({**base, "layers": [[6, "tanh"], [3, "softmax"]],
                             "fit": {**base["fit"], "epochs": 3, "checkpoint": path, "resume": True}}, 2,
                            "ConfigError: the checkpoint holds 75 parameters; this network has 57."),
        "schedule total": ({**base, "fit": {**base["fit"], "epochs": 3, "checkpoint": cosine, "resume": True,
                                            "schedule": "cosine"}}, 2,
                           "ConfigError: the checkpoint's run was planned for 2 epochs"),
        "block_rows": ({**base, "npy": npy, "fit": {**base["fit"], "epochs": 3, "checkpoint": blocks, "resume": True,
                                                    "block_rows": 45}}, 2,
                       "ConfigError: the checkpoint's run read its data streamed in blocks of 50 rows"),
    }
    for name, (case, K, error) in cases.items():
        done, results = mpirun(K, {name: {**case, "expect_error": True}}, tmp_path, timeout=60)
        assert done.returncode == 0 and _no_abort(done.stderr), (name, done.stderr)
        errors = list(results[name + "/errors"])
        assert len(errors) == K and len(set(errors)) == 1 and errors[0].startswith(error), (name, errors)
        assert [Path(name).read_bytes() for name in (path, cosine, blocks)] == saved  # untouched


def _train_csv(tmp_path, rows, name, scale=1.0):
    X = np.random.default_rng(rows).normal(size=(rows, 2)) * scale
    (tmp_path / name).write_text("a,b,label\n" + "".join(f"{a!r},{b!r},{int(a > 0)}\n" for a, b in X.tolist()))


def _one_line(done, line):
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("handgrad: error: " + line), done.stderr


@needs_mpi
def test_bad_input_the_trainer_finds_under_mpiexec_is_one_line_and_exit_status_2(tmp_path):
    _train_csv(tmp_path, 60, "good.csv")
    _train_csv(tmp_path, 60, "other.csv", scale=2.0)  # as many rows, other values: another standardization
    flags = ["--target", "label", "--layers", "4:tanh,1:sigmoid", "--distributed", "--optimizer", "adam"]
    done = _mpi_train([(2, ["--csv", "good.csv", *flags, "--epochs", "2", "--checkpoint", "run.ckpt", "--quiet"])],
                      tmp_path)
    assert done.returncode == 0, done.stderr
    saved = (tmp_path / "run.ckpt").read_bytes()
    resume = ["--epochs", "4", "--resume", "run.ckpt", "--out", "m.npz", "--run-dir", "run"]
    cases = {  # (ranks, flags) groups -> the one line rank 0 prints
        "another number of ranks": ([(3, ["--csv", "good.csv", *flags, *resume])],
                                    "the checkpoint was written by 2 rank(s); resume it with the same number"),
        "other data": ([(2, ["--csv", "other.csv", *flags, *resume])],
                       "the checkpoint was made on other training data"),
        "data sizes per rank": ([(1, ["--csv", "good.csv", *flags, "--out", "m.npz"]),
                                 (1, ["--csv", "good.csv", "--limit", "55", *flags, "--out", "m.npz"])],
                                "the ranks hold different data (rank 0: 36 samples, rank 1: 33 samples)"),
        "a setting": ([(2, ["--csv", "good.csv", *flags, "--optimizer", "adagrad", "--out", "m.npz"])],
                      "unknown optimizer 'adagrad'"),
        "L-BFGS": ([(2, ["--csv", "good.csv", *flags, "--optimizer", "lbfgs", "--out", "m.npz"])],
                   "distributed is not used by L-BFGS"),
    }
    for name, (groups, line) in cases.items():
        done = _mpi_train(groups, tmp_path)
        _one_line(done, line)
        assert _no_abort(done.stderr), (name, done.stderr)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["good.csv", "other.csv", "run.ckpt"], name
        assert (tmp_path / "run.ckpt").read_bytes() == saved, name
    done = _mpi_train([(2, ["--csv", "good.csv", *flags, *resume, "--quiet", "--no-plots"])], tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr


@needs_mpi
def test_a_config_file_can_ask_for_data_parallel_training_and_rank_0_alone_writes_its_outputs(tmp_path):
    """`distributed = true` in the config works as --distributed does, and the config's out and run_dir are
    rank 0's alone (before, ranks other than 0 cleared out and run_dir before reading the config, which then
    set them again on every rank)."""
    config = tmp_path / "run.toml"
    config.write_text(f'data = "moons"\nsamples = 200\nlayers = "6:tanh,1:sigmoid"\nepochs = 2\n'
                      f'distributed = true\nout = "{tmp_path / "file.npz"}"\nrun_dir = "{tmp_path / "run"}"\n'
                      'no_plots = true\n')
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "handgrad", "train"]
    from_file = subprocess.run([*command, "--config", str(config)], capture_output=True, text=True, env=env,
                               timeout=120)
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout.count("model written to") == 1 and from_file.stderr == ""
    flags = subprocess.run([*command, "--data", "moons", "--samples", "200", "--layers", "6:tanh,1:sigmoid",
                            "--epochs", "2", "--distributed", "--out", str(tmp_path / "flags.npz")],
                           capture_output=True, text=True, env=env, timeout=120)
    assert flags.returncode == 0, flags.stderr
    assert np.array_equal(hg.load(tmp_path / "file.npz").params, hg.load(tmp_path / "flags.npz").params)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["history.csv", "history.json", "metrics.json"]

