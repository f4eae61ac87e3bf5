"""Relative paths in a --config file are relative to the file's folder (every path-valued setting: the data
files, class_weight's file, checkpoint, resume, init_from, out, run_dir); paths on the command line stay
relative to the current folder; absolute paths are kept. `handgrad sweep --config` reads them the same way."""

import json
import os

import numpy as np
import pytest

import handgrad as hg
from handgrad import cli, cli_sweep
from handgrad.errors import ConfigError


def write_csv(path, n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] > 0).astype(int)
    lines = ["a,b,c,label"] + [",".join([repr(float(v)) for v in row] + [str(t)]) for row, t in zip(X, y)]
    path.write_text("\n".join(lines) + "\n")


CONFIG = """[model]
layers = "4:tanh,2:softmax"
[training]
epochs = 2
class_weight = "weights.json"
checkpoint = "run.ckpt"
[data]
csv = "data.csv"
target = "label"
[output]
out = "model.npz"
run_dir = "run"
no_plots = true
"""


@pytest.fixture
def folders(tmp_path, monkeypatch):
    config_dir, elsewhere = tmp_path / "conf", tmp_path / "elsewhere"
    config_dir.mkdir()
    elsewhere.mkdir()
    write_csv(config_dir / "data.csv")
    (config_dir / "weights.json").write_text(json.dumps({"0": 1.0, "1": 3.0}))
    (config_dir / "run.toml").write_text(CONFIG)
    monkeypatch.chdir(elsewhere)
    return config_dir, elsewhere


def train(*argv):
    return cli.main(["train", "--quiet", *map(str, argv)])


def test_a_config_reads_and_writes_beside_itself_from_any_current_folder(folders):
    config_dir, elsewhere = folders
    assert train("--config", "../conf/run.toml") == 0
    for name in ("model.npz", "run.ckpt", "run"):
        assert (config_dir / name).exists(), name
    assert list(elsewhere.iterdir()) == []
    assert hg.load(config_dir / "model.npz").n_inputs == 3
    # resume and init_from in the file are relative to it too
    (config_dir / "again.toml").write_text(CONFIG.replace("epochs = 2", "epochs = 3") + 'resume = "run.ckpt"\n')
    assert train("--config", config_dir / "again.toml", "--force") == 0
    (config_dir / "new.toml").write_text(CONFIG.replace('checkpoint = "run.ckpt"', 'init_from = "model.npz"')
                                         .replace('"model.npz"\nrun_dir', '"model2.npz"\nrun_dir')
                                         .replace('layers = "4:tanh,2:softmax"', ""))
    assert train("--config", config_dir / "new.toml", "--force") == 0
    assert (config_dir / "model2.npz").exists()


def test_command_line_paths_stay_relative_to_the_current_folder(folders):
    config_dir, elsewhere = folders
    write_csv(elsewhere / "mine.csv", n=40, seed=1)
    assert train("--config", config_dir / "run.toml", "--csv", "mine.csv", "--out", "here.npz") == 0
    assert (elsewhere / "here.npz").exists() and not (config_dir / "model.npz").exists()
    metadata = hg.load(elsewhere / "here.npz").metadata
    assert metadata["data"]["path"].endswith("mine.csv")


def test_absolute_paths_in_a_config_are_kept(folders, tmp_path):
    config_dir, elsewhere = folders
    write_csv(tmp_path / "abs.csv", n=50, seed=2)
    text = CONFIG.replace('csv = "data.csv"', f"csv = {json.dumps(str(tmp_path / 'abs.csv'))}") \
        .replace('out = "model.npz"', f"out = {json.dumps(str(tmp_path / 'abs.npz'))}")
    (config_dir / "abs.toml").write_text(text)
    assert train("--config", config_dir / "abs.toml") == 0
    assert (tmp_path / "abs.npz").exists()
    assert hg.load(tmp_path / "abs.npz").metadata["data"]["path"] == str(tmp_path / "abs.csv")


def test_a_missing_file_named_in_a_config_is_reported_beside_the_config(folders, capsys):
    config_dir, _ = folders
    (config_dir / "bad.toml").write_text(CONFIG.replace('csv = "data.csv"', 'csv = "missing.csv"'))
    assert train("--config", config_dir / "bad.toml") == 2
    assert str(config_dir / "missing.csv") in capsys.readouterr().err


def test_sweep_reads_a_configs_paths_beside_it_too(folders, monkeypatch, capsys):
    config_dir, elsewhere = folders
    seen = {}

    def stop(args, split, standardizer, description):  # what the sweep would train on, without a cluster
        seen.update(csv=args.csv, n=len(split.y_train) + len(split.y_val) + len(split.y_test))
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(cli_sweep, "run_sweep", stop)
    assert cli.main(["sweep", "--config", "../conf/run.toml", "--param", "learning_rate=0.1,0.5"]) == 2
    assert "stopped by the test" in capsys.readouterr().err
    assert seen == {"csv": os.path.join("..", "conf", "data.csv"), "n": 60}  # the config's folder, as given
