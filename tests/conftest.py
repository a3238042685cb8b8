import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cil24_root():
    """The real CIL images: $CIL24_ROOT, else ../shared/data/cil24 beside the repository."""
    return os.environ.get("CIL24_ROOT", os.path.join(REPO, "..", "shared", "data", "cil24"))


@pytest.fixture
def cil24():
    root = cil24_root()
    if not os.path.isdir(os.path.join(root, "Annotations")):
        pytest.skip(f"real CIL data not found at {root} (set CIL24_ROOT)")
    return root


@pytest.fixture
def load_tool():
    """A script of tools/ (not a package) by name, loaded as a module: load_tool("cil_recipe")."""

    def load(name):
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(REPO, "tools", f"{name}.py")
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
