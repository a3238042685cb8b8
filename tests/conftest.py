import importlib.util
import os

import pytest

import deepacc_d2  # noqa: F401  (compatibility fixes before detectron2 loads)
from deepacc_d2.studies.review_benchmark import HEIGHT, WIDTH, grid_boxes, normal, synthetic_case  # noqa: F401

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


# ---------------------------------------------------------------- a karyotype case to review
def make_case(root, cells):
    """A case folder as ``deepacc karyotype`` writes it, from hand-built detections: per cell
    an image (dark rods on white at the boxes) and confident calls of ``names``."""
    synthetic_case(str(root), cells)
    return root


@pytest.fixture
def review_case(tmp_path):
    """A case of two cells, "cellA" 46,XY and "cellB" 45,XY,-21, as deepacc karyotype writes
    it (review page tests)."""
    monosomy = normal()
    monosomy.remove("21")
    return make_case(tmp_path / "case", {"cellA": normal(), "cellB": monosomy})
