"""Every example in examples/ runs, exits 0, and prints what it claims to show.

The scripts run in a subprocess with this interpreter; HANDGRAD_EXAMPLE_FAST=1 makes the MNIST
example small. Numbers the examples print are parsed and checked where they carry the point of the
example (hand-written equations agree with handgrad; the wrong variant disagrees; training helps).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SEEDS = ["seed000_binary_2d", "seed001_l2_regression", "seed002_mnist", "seed003_leaky_relu_deep",
         "seed004_two_layer_mse"]
MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"


def run_example(name, *args):
    env = dict(os.environ, HANDGRAD_EXAMPLE_FAST="1", PYTHONIOENCODING="utf-8")
    result = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *args], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, f"{name} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def number_after(text, label):
    match = re.search(re.escape(label) + r"\s*([-+0-9.eE]+)", text)
    assert match, f"no '{label}' line in the output:\n{text}"
    return float(match.group(1))


def test_one_example_per_seed_with_a_docstring():
    for name in SEEDS:
        source = (EXAMPLES / f"{name}.py").read_text(encoding="utf-8")
        assert source.startswith('"""'), f"{name}.py should open with a docstring saying what it shows"
        assert "Run:" in source


def test_seed000_binary_2d():
    out = run_example("seed000_binary_2d")
    assert number_after(out, "vs handgrad on one sample: max difference") < 1e-12
    before = number_after(out, "accuracy before training:")
    after = number_after(out, "test accuracy:")
    assert after >= 0.8 and after > before


def test_seed001_l2_regression():
    out = run_example("seed001_l2_regression")
    assert number_after(out, "max difference") < 1e-12
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+", line)]
    assert len(rows) == 4, out
    norms_w1 = [float(row[1]) for row in rows]
    assert norms_w1[-1] < norms_w1[0], "a larger l2 should give smaller weights"


@pytest.mark.skipif(not MNIST.is_dir(), reason="real MNIST is not present")
def test_seed002_mnist_real_data():
    out = run_example("seed002_mnist", "--data", str(MNIST))
    assert "MNIST t10k: 10000 digits of 784 pixels" in out
    assert "closed form dL/dZ2 = (A2 - Y)/m in use: True" in out
    assert number_after(out, "test accuracy:") > 0.5  # 10 classes: chance is 0.1


def test_seed002_mnist_falls_back_to_generated_data(tmp_path):
    out = run_example("seed002_mnist", "--data", str(tmp_path / "absent"), "--samples", "300")
    assert "note: MNIST not found" in out
    assert 0.0 <= number_after(out, "test accuracy:") <= 1.0


def test_seed003_leaky_relu_deep():
    out = run_example("seed003_leaky_relu_deep")
    assert number_after(out, "binary cross-entropy, f_L' skipped as written:") < 1e-12
    assert number_after(out, "squared error,        f_L' skipped as written:") > 1e-3
    assert number_after(out, "f_L' applied (fixed):") < 1e-12
    assert number_after(out, "test accuracy:") > 0.9


def test_seed004_two_layer_mse():
    out = run_example("seed004_two_layer_mse")
    for name in ("Y1", "H1", "y_pred", "L", "dy_pred", "dH1", "dW2", "db2", "dY1", "dW1", "db1"):
        assert re.search(rf"^{name}\s+=", out, re.MULTILINE), f"{name} not printed"
    assert number_after(out, "max |handgrad - by hand| over all gradients:") < 1e-12
    errors = [float(value) for value in re.findall(r"'[Wb]\d': '([0-9.e+-]+)'", out)]
    assert len(errors) == 4 and max(errors) < 1e-6
    losses = [float(value) for value in re.findall(r"loss before the step ([0-9.]+)", out)]
    assert len(losses) == 5 and losses[-1] < losses[0]
