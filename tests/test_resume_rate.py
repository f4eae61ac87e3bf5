"""A resume with another learning rate or another schedule (or the same schedule with other hyperparameters) is
another run, so it is refused (a ConfigError; the CLI prints one line and exits 2), naming both values and the
way to a new run from the trained weights (--init-from). A checkpoint written before the rate was recorded
resumes unchecked, bit-identically."""

import numpy as np
import pytest

import handgrad as hg
from handgrad.checkpoints import read_checkpoint, write_checkpoint
from handgrad.cli import main


def problem(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64)


def network():
    return hg.MLP(4, [(6, "tanh"), (2, "softmax")], seed=1)


OPTIONS = dict(batch_size=50, optimizer="adam", verbose=False, seed=3)


@pytest.fixture
def checkpoint(tmp_path):
    X, y = problem()
    path = tmp_path / "run.ckpt"
    network().fit(X, y, epochs=1, learning_rate=0.01, schedule="step", checkpoint=path, **OPTIONS)
    return X, y, path


def test_another_learning_rate_is_refused_naming_both_and_init_from(checkpoint):
    X, y, path = checkpoint
    with pytest.raises(hg.ConfigError, match=r"learning_rate 0\.01, this call with 0\.02;.*--learning-rate 0\.01.*"
                                             r"--init-from MODEL\.npz"):
        network().fit(X, y, epochs=2, learning_rate=0.02, schedule="step", checkpoint=path, resume=True, **OPTIONS)


def test_another_schedule_or_its_hyperparameters_are_refused_with_advice(checkpoint):
    X, y, path = checkpoint
    with pytest.raises(hg.ConfigError, match=r"the 'step' schedule, this call the 'cosine' schedule;.*--schedule step"
                                             r".*--init-from MODEL\.npz"):
        network().fit(X, y, epochs=2, learning_rate=0.01, schedule="cosine", checkpoint=path, resume=True, **OPTIONS)
    other = hg.schedules.StepDecay(step_size=3, gamma=0.5)
    with pytest.raises(hg.ConfigError, match=r"the 'step' \(step_size=.*\) schedule, this call the 'step' "
                                             r"\(step_size=3, gamma=0\.5\) schedule"):
        network().fit(X, y, epochs=2, learning_rate=0.01, schedule=other, checkpoint=path, resume=True, **OPTIONS)


def test_the_same_rate_and_schedule_resume_bit_identically(checkpoint):
    X, y, path = checkpoint
    whole = network()
    whole.fit(X, y, epochs=2, learning_rate=0.01, schedule="step", **OPTIONS)
    resumed = network()
    resumed.fit(X, y, epochs=2, learning_rate=0.01, schedule="step", checkpoint=path, resume=True, **OPTIONS)
    assert np.array_equal(resumed.params, whole.params)


def test_an_old_checkpoint_without_the_rate_resumes_unchecked(checkpoint):
    X, y, path = checkpoint
    state = read_checkpoint(path)
    del state["learning_rate"]
    write_checkpoint(path, state)
    resumed = network()
    resumed.fit(X, y, epochs=2, learning_rate=0.02, schedule="step", checkpoint=path, resume=True, **OPTIONS)
    assert resumed.training_state["learning_rate"] == 0.02


CLI = ["--target", "label", "--layers", "6:tanh,2:softmax", "--optimizer", "adam", "--quiet", "--no-plots",
       "--batch-size", "16"]


@pytest.mark.parametrize("change, expected", [
    (["--learning-rate", "0.05", "--schedule", "constant"], "learning_rate 0.01, this call with 0.05"),
    (["--learning-rate", "0.01", "--schedule", "cosine"], "the 'constant' schedule, this call the 'cosine' schedule"),
])
def test_the_cli_refuses_in_one_line_with_exit_2(capsys, tmp_path, change, expected):
    X, y = problem(100)
    lines = ["a,b,c,d,label"] + [",".join([repr(float(v)) for v in row] + [str(int(t))]) for row, t in zip(X, y)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    common = ["train", "--csv", str(tmp_path / "data.csv"), *CLI]
    assert main([*common, "--epochs", "1", "--learning-rate", "0.01", "--checkpoint", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    assert main([*common, "--epochs", "2", *change, "--resume", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err and "--init-from MODEL.npz" in err, err
    assert main([*common, "--epochs", "2", "--learning-rate", "0.01", "--resume", str(tmp_path / "c")]) == 0
