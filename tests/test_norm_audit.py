"""Issue 13 audit: batch/layer normalization and curvature where they meet the rest of handgrad (the
command line's model-based commands, model files, ...). Each test failed before its fix."""

import numpy as np

import handgrad as hg
from handgrad import datasets
from handgrad.cli import main


def trained_norm_model(tmp_path):
    X, y = datasets.make_moons(120, seed=0)
    net = hg.MLP(2, ["6:tanh:batchnorm", "5:relu:layernorm", (1, "sigmoid")], seed=0)
    net.fit(X, y, epochs=2, batch_size=16, verbose=False)
    path = tmp_path / "model.npz"
    net.save(path)
    return path


def test_gradcheck_of_a_saved_norm_model_checks_gamma_and_beta(tmp_path, capsys):
    model = trained_norm_model(tmp_path)
    assert main(["gradcheck", "--model", str(model)]) == 0
    out = capsys.readouterr().out
    for name in ("W1", "gamma1", "beta1", "gamma2", "beta2", "W3", "b3"):
        assert f"\n{name} " in out, name
    assert "PASS" in out
