"""The package's shape: no module over 400 lines, and no import cycle between its modules."""

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deepacc_d2")
MODULES = sorted(
    os.path.relpath(os.path.join(base, f), os.path.dirname(PACKAGE))
    for base, _, files in os.walk(PACKAGE)
    for f in files
    if f.endswith(".py")
)


def module_name(path):
    name = path[: -len(".py")].replace(os.sep, ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def imports_of(path):
    """The package modules that ``path`` imports, at any depth of its code."""
    name = module_name(path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    with open(os.path.join(os.path.dirname(PACKAGE), path)) as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c.startswith("deepacc_d2")}
    return found


@pytest.mark.parametrize("path", MODULES)
def test_module_size(path):
    with open(os.path.join(os.path.dirname(PACKAGE), path)) as f:
        assert len(f.readlines()) <= 400


def test_no_import_cycle():
    names = {module_name(p) for p in MODULES}
    graph = {
        module_name(p): {m for m in imports_of(p) if m in names and m != module_name(p)}
        for p in MODULES
    }
    # a package's __init__ importing its own modules is how packages are made, not a cycle
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".") and m != "deepacc_d2"}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


# The package's three layers, lowest first: each imports only its own and the ones below.
LAYERS = ("core", "app", "studies")


def layer_of(name: str) -> str:
    """deepacc_d2.app.* is the application, deepacc_d2.studies.* the studies, the rest the
    core (the root modules, modeling, evaluation, data, engine)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS[1:] else "core"


def test_layer_of_names_each_folder():
    assert layer_of("deepacc_d2") == "core"
    assert layer_of("deepacc_d2.modeling.fast_rcnn") == "core"
    assert layer_of("deepacc_d2.engine.trainer") == "core"
    assert layer_of("deepacc_d2.app.karyotype.cell") == "app"
    assert layer_of("deepacc_d2.studies.recipe") == "studies"


@pytest.mark.parametrize("path", MODULES)
def test_imports_go_down_the_layers(path):
    name = module_name(path)
    names = {module_name(p) for p in MODULES}
    rank = LAYERS.index(layer_of(name))
    upward = sorted(m for m in imports_of(path) if m in names and LAYERS.index(layer_of(m)) > rank)
    assert not upward, f"{name} ({layer_of(name)}) imports {upward}"


def test_few_modules_in_the_package_root():
    root = [f for f in os.listdir(PACKAGE) if f.endswith(".py")]
    assert len(root) <= 8, sorted(root)


def _functions(tree):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


@pytest.mark.parametrize("path", MODULES)
def test_functions_read_at_once(path):
    with open(os.path.join(os.path.dirname(PACKAGE), path)) as f:
        tree = ast.parse(f.read())
    long = [(n.name, n.end_lineno - n.lineno + 1) for n in _functions(tree)]
    assert not [(name, lines) for name, lines in long if lines > 80]
