"""The documentation names what the code has: every `handgrad <command> --flag` written in README.md and
docs/*.md is a flag of that command's parser, every flag of every command is in docs/cli.md or the
command's own page, and every dotted `handgrad.module.name` (or `hg.name`) in backquotes resolves."""

import argparse
import importlib
import inspect
import re
from pathlib import Path

import pytest

import handgrad
from handgrad.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OWN_PAGE = {"sweep": "sweeps.md", "playground": "playground.md"}  # a command documented on a page of its own
NOT_OURS = {"handgrad.sklearn.utils", "handgrad.sklearn.neural_network"}  # scikit-learn's names, not ours


def _commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {flag for action in command._actions for flag in action.option_strings}
            for name, command in sub.choices.items()}


COMMANDS = _commands()


def _text(path):
    return path.read_text(encoding="utf-8")


def _command_lines(text):
    """(command, the rest of its line) for each `handgrad COMMAND ...`, continuation lines (ending in \\) joined."""
    text = re.sub(r"\\\n", " ", text)
    for match in re.finditer(r"handgrad ([a-z][a-z-]*)([^`\n|]*)", text):
        if match.group(1) in COMMANDS:
            yield match.group(1), match.group(2)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_flag_written_after_a_command_is_that_commands(path):
    wrong = [f"handgrad {command} {flag}" for command, rest in _command_lines(_text(path))
             for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest) if flag not in COMMANDS[command]]
    assert not wrong, f"{path.name} names flags the command does not have: {sorted(set(wrong))}"


def test_commands_written_in_the_docs_exist():
    unknown = {m for path in DOCS for m in re.findall(r"`handgrad ([a-z][a-z-]+)", _text(path))
               if m not in COMMANDS}
    assert not unknown, f"the docs name commands that do not exist: {sorted(unknown)}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_of_a_command_is_documented(command):
    text = _text(ROOT / "docs" / "cli.md")
    if command in OWN_PAGE:
        text += _text(ROOT / "docs" / OWN_PAGE[command])
    missing = sorted(flag for flag in COMMANDS[command] if flag.startswith("--") and flag not in ("--help", "--debug")
                     and not re.search(re.escape(flag) + r"(?![\w-])", text))
    assert not missing, f"handgrad {command}: flags missing from docs/cli.md: {missing}"


def test_every_command_is_named_in_cli_md():
    text = _text(ROOT / "docs" / "cli.md")
    assert not [c for c in COMMANDS if f"`{c}`" not in text]


MODULES = {p.stem for p in (ROOT / "src" / "handgrad").glob("*.py")} | {"playground"}


def _resolves(name):
    """As a reader writes it after `import handgrad as hg`: `hg.explain` is the function, not the module
    (the package's attribute shadows it); a module the package does not import is imported. A bare
    `module.name` means the module."""
    package = name.split(".")[0] in ("handgrad", "hg")
    parts = name.split(".")[1:] if package else name.split(".")
    obj = handgrad
    if parts and parts[0] in MODULES and not (package and hasattr(handgrad, parts[0])):
        obj = importlib.import_module(f"handgrad.{parts[0]}")
        parts = parts[1:]
    for part in parts:
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def _dotted_names(text):
    """`handgrad.x.y`, `hg.x` and `module.name` (a handgrad module) inside backquotes."""
    pattern = r"(?<![\w./-])((?:handgrad|hg)\.[A-Za-z_][\w.]*\w)"
    for code in re.findall(r"`([^`\n]+)`", text):
        for name in re.findall(pattern, code):
            if not name.endswith((".py", ".md", ".npz", ".csv", ".json", ".svg", ".png", ".dot")):
                yield name


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_dotted_names_in_the_docs_resolve(path):
    bad = sorted({n for n in _dotted_names(_text(path))
                  if not n.startswith(tuple(NOT_OURS)) and not _resolves(n)})
    assert not bad, f"{path.name} names what handgrad does not have: {bad}"


def test_module_dotted_names_in_the_docs_resolve():
    """`network.MLP.fit`-style names: a handgrad module, then its attributes."""
    modules = "|".join(sorted(MODULES - {"sklearn", "distributed", "graph"}))  # also other projects' names
    bad = set()
    for path in DOCS:
        for code in re.findall(r"`([^`\n]+)`", _text(path)):
            for name in re.findall(rf"(?<![\w./-])((?:{modules})\.[A-Za-z_][\w.]*\w)", code):
                if not name.endswith((".py", ".md", ".npz", ".csv", ".json", ".svg", ".png", ".dot")) \
                        and not _resolves(name):
                    bad.add(f"{path.name}: {name}")
    assert not bad, f"the docs name what handgrad does not have: {sorted(bad)}"


def test_the_resolver_can_fail():
    assert _resolves("handgrad.callbacks.EarlyStopping") and _resolves("hg.load")
    assert not _resolves("handgrad.callbacks.EarlyStopping.best_weights_list")
    assert not _resolves("hg.no_such_function")
    assert not _resolves("handgrad.explain.explained")  # hg.explain is the function
    assert _resolves("explain.explained") and _resolves("handgrad.datasets.make_moons")
    assert _resolves_in(handgrad, "MLP.backprop") and not _resolves_in(handgrad, "MLP.no_such_method")


def _handgrad_classes():
    classes = {}
    for path in sorted((ROOT / "src" / "handgrad").glob("*.py")):
        if path.stem in ("__main__", "sklearn", "torch_io", "onnx_export", "sweeps"):
            continue  # optional extras: their classes are checked only where the extra is installed
        module = importlib.import_module(f"handgrad.{path.stem}")
        classes.update({name: value for name, value in vars(module).items()
                        if inspect.isclass(value) and value.__module__.startswith("handgrad")})
    return classes


def _has(cls, attr):
    """A class attribute, or an instance attribute its code sets (`self.reduce = None`)."""
    if hasattr(cls, attr):
        return True
    return any(f"self.{attr} =" in inspect.getsource(klass) for klass in cls.__mro__
               if klass.__module__.startswith("handgrad"))


def test_class_attributes_in_the_docs_exist():
    """`MLP.update_running_statistics`, `EarlyStopping.best_params`, ...: a handgrad class and its attribute."""
    classes = _handgrad_classes()
    bad = {f"{path.name}: {cls}.{attr}" for path in DOCS for code in re.findall(r"`([^`\n]+)`", _text(path))
           for cls, attr in re.findall(r"(?<![\w.])([A-Z]\w+)\.([a-z_]\w*)", code)
           if cls in classes and not _has(classes[cls], attr)}
    assert not bad, f"the docs name attributes the classes do not have: {sorted(bad)}"
    assert not _has(classes["EarlyStopping"], "best_weights") and _has(classes["EarlyStopping"], "best_params")


def _resolves_in(module, name):
    obj = module
    for part in name.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def test_names_in_module_docstrings_resolve():
    """The :func:`x`, :class:`x`, :meth:`C.m` and ``handgrad.x.y`` names of every module's docstring."""
    bad = []
    for path in sorted((ROOT / "src" / "handgrad").glob("*.py")):
        if path.stem in ("__main__", "sklearn", "torch_io", "onnx_export", "sweeps"):
            continue  # optional extras: their modules import only where the extra is installed
        module = importlib.import_module(f"handgrad.{path.stem}")
        doc = module.__doc__ or ""
        for name in re.findall(r":(?:func|class|meth|mod|data):`~?\.?([\w.]+)`", doc):
            if not name.startswith("matplotlib.") and not (_resolves_in(module, name) or _resolves(name)):
                bad.append(f"{path.stem}: {name}")
        codes = re.findall(r"``([^`\n]+)``", doc)
        bad += [f"{path.stem}: {name}" for code in codes for name in _dotted_names(f"`{code}`") if not _resolves(name)]
    assert not bad, f"module docstrings name what handgrad does not have: {bad}"


def test_net_attributes_in_the_docs_exist():
    """`net.params`, `net.training_state`, ...: an attribute of an MLP, or one network.py sets
    (`net.metadata` on load)."""
    import numpy as np

    net = handgrad.MLP(2, [(3, "relu"), (1, "sigmoid")], dropout=0.1, seed=0)
    net.partial_fit(np.zeros((4, 2)), np.array([0, 1, 0, 1]))
    source = inspect.getsource(importlib.import_module("handgrad.network"))
    bad = {f"{path.name}: net.{attr}" for path in DOCS for code in re.findall(r"`([^`\n]+)`", _text(path))
           for attr in re.findall(r"(?<![\w.])net\.([a-zA-Z_]\w*)", code)
           if not hasattr(net, attr) and f"self.{attr} =" not in source and f"net.{attr} =" not in source}
    assert not bad, f"the docs name attributes an MLP does not have: {sorted(bad)}"
