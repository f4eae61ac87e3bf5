"""An exp output beyond the float range: predict returns inf (the value of e^z there) without a NumPy
RuntimeWarning, and ``handgrad predict`` says in one 'handgrad: warning:' line how many overflowed and why."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import handgrad as hg
from handgrad.cli import main


def _overflowing_model(dtype="float64"):
    """A Poisson regressor whose output z is about 1000 on the rows with x0 > 0 and about 0 elsewhere."""
    net = hg.MLP(2, [(1, "exp")], loss="poisson", seed=0, dtype=dtype)
    net.set_weights([np.array([[1000.0], [0.0]]), np.zeros(1)])
    X = np.array([[1.0, 0.3], [0.0, 0.3], [2.0, -1.0], [-0.5, 0.0]])
    return net, X


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_predict_returns_inf_where_e_to_the_z_overflows_and_warns_nothing(dtype):
    net, X = _overflowing_model(dtype)
    with warnings.catch_warnings(), np.errstate(over="warn"):
        warnings.simplefilter("error")  # a leaked RuntimeWarning would fail here
        prediction = net.predict(X)
    assert prediction.shape == (4, 1)
    assert np.isposinf(prediction[[0, 2], 0]).all()
    np.testing.assert_allclose(prediction[[1, 3], 0], np.exp([0.0, -500.0]).astype(dtype), rtol=1e-6)


def test_exp_forward_still_writes_into_out():
    from handgrad.activations import get_activation

    out = np.empty(3)
    result = get_activation("exp").forward(np.array([0.0, 1.0, 1000.0]), out=out)
    assert result is out and out[0] == 1.0 and out[1] == pytest.approx(np.e) and np.isposinf(out[2])


def _files(tmp_path, dtype="float64"):
    net, X = _overflowing_model(dtype)
    model = tmp_path / "poisson.hgm"
    net.save(str(model))
    data = tmp_path / "x.csv"
    np.savetxt(data, X, delimiter=",", header="a,b", comments="")
    return str(model), str(data)


@pytest.mark.parametrize("dtype, limit", [("float64", "709.78"), ("float32", "88.72")])
def test_cli_predict_prints_one_warning_line_saying_how_many_overflowed(tmp_path, capsys, dtype, limit):
    model, data = _files(tmp_path, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code = main(["predict", model, data])
    captured = capsys.readouterr()
    assert code == 0
    rows = captured.out.splitlines()
    assert rows[0] == "prediction" and rows[1] == "inf" and rows[3] == "inf" and float(rows[2]) == 1.0
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("handgrad: warning: 2 of 4 predicted values are infinite"), lines
    assert f"e^z overflows above z = {limit} in {dtype}" in lines[0]


def test_cli_predict_without_overflow_prints_no_warning(tmp_path, capsys):
    model, data = _files(tmp_path)
    np.savetxt(data, [[0.0, 1.0], [-1.0, 2.0]], delimiter=",", header="a,b", comments="")
    assert main(["predict", model, data]) == 0
    assert capsys.readouterr().err == ""


def test_the_command_line_shows_no_numpy_warning(tmp_path):
    """As a user runs it: a separate process, Python's default warning filters."""
    model, data = _files(tmp_path)
    env = dict(os.environ, PYTHONWARNINGS="default")
    result = subprocess.run([sys.executable, "-m", "handgrad", "predict", model, data, "--out",
                             str(tmp_path / "p.csv")], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "RuntimeWarning" not in result.stderr and "overflow encountered" not in result.stderr, result.stderr
    assert result.stderr.count("handgrad: warning:") == 1 and "2 of 4 predicted values" in result.stderr
    assert (tmp_path / "p.csv").read_text().splitlines()[1] == "inf"
