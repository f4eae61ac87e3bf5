"""No import cycles among the modules of src/handgrad, read from their import statements (ast, not importing).

Every import of a handgrad module counts, at module level and inside functions alike: a function-level
import is still a dependency, only a later one. The package ``__init__`` (the public API) and
``__main__`` may import anything, and nothing imports them (``from . import __version__`` would make
every module depend on the whole package; the version lives in ``_version.py``).
"""

import ast
import os

PACKAGE = "handgrad"
SOURCE = os.path.join(os.path.dirname(__file__), os.pardir, "src", PACKAGE)
TOP = ("__init__", "__main__")  # may import anything; nothing may import them


def module_names(source=SOURCE):
    return sorted(name[:-3] for name in os.listdir(source) if name.endswith(".py"))


def imported_modules(tree, modules):
    """The handgrad modules one parsed file imports; ``__init__`` for a name taken from the package itself."""
    found = set()

    def add_from_package(names):
        for alias in names:
            found.add(alias.name if alias.name in modules else "__init__")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE:
                    found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".") if node.module else []
            if node.level == 1 and not parts:  # from . import x
                add_from_package(node.names)
            elif node.level == 1:  # from .x import y
                found.add(parts[0])
            elif node.level == 0 and parts[0] == PACKAGE:
                if len(parts) == 1:  # from handgrad import x
                    add_from_package(node.names)
                else:  # from handgrad.x import y
                    found.add(parts[1])
            elif node.level > 1:
                raise AssertionError(f"import from outside the package (level {node.level}): {ast.dump(node)}")
    return found


def import_graph(source=SOURCE):
    modules = set(module_names(source))
    graph = {}
    for name in sorted(modules):
        with open(os.path.join(source, name + ".py"), encoding="utf-8") as file:
            tree = ast.parse(file.read(), filename=name + ".py")
        graph[name] = imported_modules(tree, modules) - {name}
    return graph


def find_cycle(graph):
    """One cycle as a list [a, b, ..., a], or None (depth-first search, white/grey/black)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "grey"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "grey":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "black"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_cycles_and_reads_every_import_form(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    for name, text in {
        "__init__": "", "a": "from . import b\n", "b": "def f():\n    from .c import x\n",
        "c": "import handgrad.d\n", "d": "from handgrad import e, thing\n",
        "e": "from handgrad.a import y\nfrom . import __version__\n",
    }.items():
        (tmp_path / f"{name}.py").write_text(text)
    graph = import_graph(str(tmp_path))
    assert graph == {"__init__": set(), "a": {"b"}, "b": {"c"}, "c": {"d"}, "d": {"e", "__init__"},
                     "e": {"a", "__init__"}}
    assert find_cycle(graph) == ["a", "b", "c", "d", "e", "a"]


def test_nothing_imports_the_package_init_or_main():
    offenders = {name: sorted(targets & set(TOP)) for name, targets in import_graph().items()
                 if name not in TOP and targets & set(TOP)}
    assert not offenders, (f"these modules import the package itself or __main__: {offenders}; import the "
                           "module that defines the name (e.g. from ._version import __version__)")


def test_no_import_cycles():
    graph = {name: {target for target in targets if target not in TOP}
             for name, targets in import_graph().items() if name not in TOP}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)

