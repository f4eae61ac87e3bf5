"""What resume refuses, what fit refuses, and how evaluate/predict read a memory-mapped file.

- A resume that could not continue bit for bit is a ConfigError naming what differs: another block_rows
  of streamed data (also one that gives the same number of blocks), other data of the same size (a
  fingerprint of a few rows), another standardization (the CLI's), or another ``epochs`` under a schedule
  that depends on the total (cosine, one_cycle). Checkpoints from before these were recorded still resume.
- Training weights that sum to zero (sample or class weights) are a DataError, in fit and in the CLI.
- ``handgrad evaluate`` and ``predict`` read a memory-mapped .npy block by block: the same output as the
  in-memory path, with a traced memory peak well below the file's size.
"""

import json
import tracemalloc

import numpy as np
import pytest

import handgrad as hg
from handgrad.checkpoints import read_checkpoint, write_checkpoint
from handgrad.cli import main
from handgrad.datasets import Standardizer
from handgrad.streaming import FINGERPRINT_ROWS, sample_rows


def problem(n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1.0)
    return X, y


def network():
    return hg.MLP(4, [(8, "tanh"), (3, "softmax")], seed=1)


OPTIONS = dict(batch_size=50, optimizer="adam", learning_rate=0.01, verbose=False, seed=3)


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(capsys, *argv):
    status, _, err = run(capsys, *argv)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    return err


# ---------------------------------------------------------------------------- streamed: block_rows
@pytest.fixture
def files(tmp_path):
    X, y = problem(1500)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    return tmp_path


def mapped(tmp_path, name):
    return np.load(tmp_path / f"{name}.npy", mmap_mode="r")


def test_another_block_rows_with_as_many_blocks_is_refused(files):
    """1500 rows in blocks of 300 or of 320: 5 blocks both, so the order vector has the same length, but the
    blocks hold other rows and the run would not continue bit for bit."""
    path = files / "run.ckpt"
    network().fit(mapped(files, "X"), mapped(files, "y"), epochs=1, block_rows=300, checkpoint=path, **OPTIONS)
    assert read_checkpoint(path)["block_rows"] == 300
    with pytest.raises(hg.ConfigError, match=r"blocks of 300 rows.*blocks of 320 rows.*block_rows=300"):
        network().fit(mapped(files, "X"), mapped(files, "y"), epochs=2, block_rows=320, checkpoint=path, resume=True,
                      **OPTIONS)
    # block sizes past N are all N: the same blocks, so the run goes on (and equals one never interrupted)
    whole = network()
    whole.fit(mapped(files, "X"), mapped(files, "y"), epochs=2, block_rows=5000, **OPTIONS)
    network().fit(mapped(files, "X"), mapped(files, "y"), epochs=1, block_rows=4000, checkpoint=path, **OPTIONS)
    resumed = network()
    resumed.fit(mapped(files, "X"), mapped(files, "y"), epochs=2, block_rows=5000, checkpoint=path, resume=True,
                **OPTIONS)
    assert np.array_equal(resumed.params, whole.params)


def test_a_streamed_run_resumed_on_another_file_of_the_same_size_is_refused(files):
    X, y = problem(1500, seed=7)
    np.save(files / "X2.npy", X)
    path = files / "run.ckpt"
    network().fit(mapped(files, "X"), mapped(files, "y"), epochs=1, block_rows=300, checkpoint=path, **OPTIONS)
    with pytest.raises(hg.ConfigError, match=r"other training data: the features X \(compared on 64 evenly"):
        network().fit(mapped(files, "X2"), mapped(files, "y"), epochs=2, block_rows=300, checkpoint=path,
                      resume=True, **OPTIONS)


def test_the_fingerprint_reads_a_bounded_number_of_rows():
    rows = sample_rows(4 * 2 ** 30 // 3136)  # a 4 GB file of MNIST-sized float32 rows
    assert len(rows) == FINGERPRINT_ROWS and rows[0] == 0 and rows[-1] == 4 * 2 ** 30 // 3136 - 1
    assert np.array_equal(sample_rows(10), np.arange(10))


# ---------------------------------------------------------------------------- in memory: other data
@pytest.mark.parametrize("change, differs", [
    (lambda X, y, w: (X + 1e-9, y, w), "the features X"),
    (lambda X, y, w: (X, (y + 1) % 3, w), "the targets"),
    (lambda X, y, w: (X, y, w * 2), r"the sample weights \(times the class weights\)"),
    (lambda X, y, w: (X, y, None), r"the sample weights \(times the class weights\)"),
], ids=["features", "targets", "weights", "no-weights"])
def test_a_resume_on_other_data_of_the_same_size_names_what_differs(tmp_path, change, differs):
    X, y = problem()
    w = np.linspace(0.5, 2.0, len(y))
    path = tmp_path / "run.ckpt"
    network().fit(X, y, sample_weight=w, epochs=1, checkpoint=path, **OPTIONS)
    X2, y2, w2 = change(X, y, w)
    with pytest.raises(hg.ConfigError, match=f"other training data: {differs}"):
        network().fit(X2, y2, sample_weight=w2, epochs=2, checkpoint=path, resume=True, **OPTIONS)
    network().fit(X, y, sample_weight=w, epochs=2, checkpoint=path, resume=True, **OPTIONS)  # the same data: fine


def test_a_checkpoint_without_the_new_fields_still_resumes_bit_identically(tmp_path):
    X, y = problem()
    whole = network()
    whole.fit(X, y, epochs=3, **OPTIONS)
    path = tmp_path / "run.ckpt"
    network().fit(X, y, epochs=1, checkpoint=path, **OPTIONS)
    state = read_checkpoint(path)
    for key in ("block_rows", "data", "preprocessing"):
        del state[key]
    write_checkpoint(path, state)  # as written before these were recorded
    resumed = network()
    resumed.fit(X, y, epochs=3, checkpoint=path, resume=True, **OPTIONS)
    assert np.array_equal(resumed.params, whole.params)


def test_a_resume_with_another_preprocessing_is_refused(tmp_path):
    X, y = problem()
    path = tmp_path / "run.ckpt"
    record = Standardizer().fit(X).to_dict()
    network().fit(X, y, epochs=1, checkpoint=path, preprocessing=record, **OPTIONS)
    with pytest.raises(hg.ConfigError, match=r"the preprocessing \(the run's: a standardization of 4 features .*"
                                             r"this call's: nothing \(raw features\)\)"):
        network().fit(X, y, epochs=2, checkpoint=path, resume=True, **OPTIONS)
    network().fit(X, y, epochs=2, checkpoint=path, resume=True, preprocessing=record, **OPTIONS)


@pytest.fixture
def blobs_csv(tmp_path):
    X, y = problem(200)
    lines = ["a,b,c,d,label"] + [",".join([repr(float(v)) for v in row] + [str(int(t))]) for row, t in zip(X, y)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    shifted = ["a,b,c,d,label"] + [",".join([repr(float(v) * 2) for v in row] + [str(int(t))])
                                   for row, t in zip(X, y)]
    (tmp_path / "scaled.csv").write_text("\n".join(shifted) + "\n")
    return tmp_path


CLI = ["--target", "label", "--layers", "8:tanh,3:softmax", "--optimizer", "adam", "--learning-rate", "0.01",
       "--quiet", "--no-plots", "--batch-size", "16"]


def test_the_cli_refuses_a_resume_with_another_standardization_or_other_data(capsys, blobs_csv):
    """scaled.csv is data.csv times 2 (exact in floating point): standardized, the very same features, so only
    the stored standardization tells the runs apart."""
    checkpoint = blobs_csv / "run.ckpt"
    status, _, err = run(capsys, "train", "--csv", blobs_csv / "data.csv", *CLI, "--epochs", "2", "--checkpoint",
                         checkpoint)
    assert status == 0, err
    err = one_line_error(capsys, "train", "--csv", blobs_csv / "data.csv", *CLI, "--epochs", "4", "--resume",
                         checkpoint, "--no-standardize")
    assert "the features X (compared on" in err and "this call's: nothing (raw features)" in err
    err = one_line_error(capsys, "train", "--csv", blobs_csv / "scaled.csv", *CLI, "--epochs", "4", "--resume",
                         checkpoint)
    assert "the features X" not in err and "the preprocessing (the run's: a standardization of 4 features" in err
    status, _, err = run(capsys, "train", "--csv", blobs_csv / "data.csv", *CLI, "--epochs", "4", "--resume",
                         checkpoint)
    assert status == 0, err


# ---------------------------------------------------------------------------- epochs and the schedule
@pytest.mark.parametrize("schedule", ["cosine", "one_cycle"])
def test_another_epochs_under_a_schedule_of_the_total_is_refused(tmp_path, schedule):
    X, y = problem()
    path = tmp_path / "run.ckpt"
    stop_after_two = [lambda epoch, logs: epoch == 2]
    network().fit(X, y, epochs=4, schedule=schedule, checkpoint=path, callbacks=stop_after_two, **OPTIONS)
    assert read_checkpoint(path)["epochs_done"] == 2
    with pytest.raises(hg.ConfigError, match=rf"planned for 4 epochs, and its '{schedule}' schedule .* at step 24 "
                                             r"would be .* Resume with epochs=4"):
        network().fit(X, y, epochs=6, schedule=schedule, checkpoint=path, resume=True, **OPTIONS)
    whole = network()
    whole.fit(X, y, epochs=4, schedule=schedule, **OPTIONS)
    resumed = network()
    resumed.fit(X, y, epochs=4, schedule=schedule, checkpoint=path, resume=True, **OPTIONS)
    assert np.array_equal(resumed.params, whole.params)


@pytest.mark.parametrize("schedule", [None, "step", "exponential", "plateau"])
def test_schedules_that_ignore_the_total_extend_a_run_bit_identically(tmp_path, schedule):
    X, y = problem()
    path = tmp_path / "run.ckpt"
    network().fit(X, y, epochs=2, schedule=schedule, checkpoint=path, **OPTIONS)
    resumed, whole = network(), network()
    resumed.fit(X, y, epochs=4, schedule=schedule, checkpoint=path, resume=True, **OPTIONS)
    whole.fit(X, y, epochs=4, schedule=schedule, **OPTIONS)
    assert np.array_equal(resumed.params, whole.params)


def test_the_cli_refuses_more_epochs_for_a_finished_cosine_run(capsys, blobs_csv):
    checkpoint = blobs_csv / "run.ckpt"
    flags = ["train", "--csv", blobs_csv / "data.csv", *CLI, "--schedule", "cosine"]
    status, _, err = run(capsys, *flags, "--epochs", "2", "--checkpoint", checkpoint)
    assert status == 0, err
    err = one_line_error(capsys, *flags, "--epochs", "4", "--resume", checkpoint)
    assert "planned for 2 epochs" in err and "--epochs 2" in err


# ---------------------------------------------------------------------------- weights that sum to zero
@pytest.mark.parametrize("weights", [
    dict(class_weight={0: 0.0, 1: 0.0, 2: 0.0}),
    dict(sample_weight=np.zeros(600)),
    dict(sample_weight=np.r_[np.zeros(300), np.ones(300)], class_weight={0: 0, 1: 0, 2: 0}),
], ids=["class", "sample", "product"])
def test_weights_that_sum_to_zero_are_a_data_error(weights):
    X, y = problem()
    with pytest.raises(hg.DataError, match=r"weights \(.*\) sum to zero"):
        network().fit(X, y, epochs=1, **weights, **OPTIONS)


def test_zero_weights_of_every_class_present_are_a_data_error_also_streamed(files):
    X, y = np.load(files / "X.npy"), np.load(files / "y.npy")
    only = y != 2  # classes 0 and 1 only: weighing them 0 leaves nothing, though class 2 weighs 1
    np.save(files / "X01.npy", X[only])
    np.save(files / "y01.npy", y[only])
    np.save(files / "w0.npy", np.zeros(only.sum()))
    for options in (dict(class_weight={0: 0, 1: 0}), dict(sample_weight=mapped(files, "w0"))):
        with pytest.raises(hg.DataError, match="sum to zero"):
            network().fit(mapped(files, "X01"), mapped(files, "y01"), epochs=1, block_rows=100, **options, **OPTIONS)
        with pytest.raises(hg.DataError, match="sum to zero"):
            network().fit(X[only], y[only], epochs=1, **{k: np.asarray(v) if k == "sample_weight" else v
                                                         for k, v in options.items()}, **OPTIONS)
    # one class with a positive weight is enough
    network().fit(mapped(files, "X01"), mapped(files, "y01"), epochs=1, block_rows=100, class_weight={0: 0},
                  **OPTIONS)


def test_the_cli_refuses_all_zero_class_weights_in_one_line(capsys, blobs_csv):
    weights = blobs_csv / "weights.json"
    weights.write_text(json.dumps({"0": 0, "1": 0, "2": 0}))
    err = one_line_error(capsys, "train", "--csv", blobs_csv / "data.csv", *CLI, "--epochs", "1", "--class-weight",
                         weights)
    assert "sum to zero" in err


# ---------------------------------------------------------------------------- evaluate, predict: memory-mapped
def saved_model(path, X, outputs=(3, "softmax")):
    """A model with a stored standardization (as handgrad train writes one), so the reads must apply it."""
    net = hg.MLP(X.shape[1], [(16, "tanh"), outputs], seed=2, dtype="float32")
    net.save(path, preprocessing=Standardizer().fit(X).to_dict())
    return path


@pytest.fixture
def big(tmp_path):
    """9000 rows: three blocks of 4096 rows or fewer, the last one short; a target column for the table."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(9000, 5)) * [1, 2, 3, 4, 5] + 10
    y = (X[:, 0] > 10).astype(np.int64) + (X[:, 1] > 12)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "table.npy", np.column_stack([X[:, :2], y, X[:, 2:]]))  # target column 2
    np.savez(tmp_path / "data.npz", X=X, y=y)
    return tmp_path, X, y


def test_evaluate_reads_a_memory_mapped_npy_as_the_in_memory_path_does(capsys, big):
    tmp_path, X, y = big
    model = saved_model(tmp_path / "model.npz", X)
    reports = []
    for data in (["--npz", tmp_path / "data.npz"], ["--npy", tmp_path / "X.npy", "--npy-targets", tmp_path / "y.npy"],
                 ["--npy", tmp_path / "table.npy", "--target", "2"]):
        status, out, err = run(capsys, "evaluate", model, *data, "--json")
        assert status == 0, err
        reports.append(json.loads(out))
    assert reports[0]["samples"] == 9000 and reports[1] == reports[0] and reports[2] == reports[0]
    # and --limit keeps the first rows, as in memory
    limited = [json.loads(run(capsys, "evaluate", model, *data, "--limit", "5000", "--json")[1])
               for data in (["--npz", tmp_path / "data.npz"], ["--npy", tmp_path / "table.npy", "--target", "2"])]
    assert limited[0]["samples"] == 5000 and limited[1] == limited[0]


@pytest.mark.parametrize("outputs", [(3, "softmax"), (1, "identity")], ids=["classifier", "regressor"])
def test_predict_reads_a_memory_mapped_npy_as_the_in_memory_path_does(capsys, big, outputs):
    tmp_path, X, y = big
    model = saved_model(tmp_path / "model.npz", X, outputs)
    proba = ["--proba"] if outputs[1] == "softmax" else []
    texts = []
    for data in ([tmp_path / "data.npz"], [tmp_path / "X.npy"], [tmp_path / "table.npy", "--target", "2"]):
        status, out, err = run(capsys, "predict", model, *data, *proba)
        assert status == 0, err
        texts.append(out)
    assert len(texts[0].splitlines()) == 9001 and texts[1] == texts[0] and texts[2] == texts[0]


def test_bad_values_in_a_late_block_are_named_by_their_rows(capsys, big):
    tmp_path, X, y = big
    model = saved_model(tmp_path / "model.npz", X)
    X[8500, 3] = np.nan
    np.save(tmp_path / "bad.npy", X)
    err = one_line_error(capsys, "predict", model, tmp_path / "bad.npy")
    assert "NaN or infinity in the features (first at sample 8500, column 3)" in err


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_predict_and_evaluate_keep_a_memory_mapped_npy_out_of_memory(capsys, tmp_path, command):
    """96 MB of features, written a part at a time: the traced peak (a few blocks of 4096 rows, and a few numbers
    per row: the outputs, the targets) stays under a quarter of the file (read whole, it is over its size)."""
    rng = np.random.default_rng(0)
    X = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float64, shape=(120000, 100))
    for a in range(0, len(X), 10000):
        X[a:a + 10000] = rng.normal(size=(10000, 100))
    np.save(tmp_path / "y.npy", (X[:, 0] > 0).astype(np.int64))
    model = saved_model(tmp_path / "model.npz", np.asarray(X[:1000]), (2, "softmax"))
    X.flush()
    del X
    argv = {"predict": [model, tmp_path / "X.npy", "--out", tmp_path / "p.csv"],
            "evaluate": [model, "--npy", tmp_path / "X.npy", "--npy-targets", tmp_path / "y.npy"]}[command]
    size = (tmp_path / "X.npy").stat().st_size
    tracemalloc.start()
    try:
        status, _, err = run(capsys, command, *argv)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 0, err
    assert peak < size / 4, f"{command} used {peak / 2 ** 20:.1f} MiB for a {size / 2 ** 20:.0f} MiB file"
