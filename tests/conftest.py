import importlib.util
import os

import numpy as np
import pytest
from PIL import Image

import deepacc_d2  # noqa: F401  (compatibility fixes before detectron2 loads)
from deepacc_d2 import add_deepacc_config
from deepacc_d2.classes import CLASS_NAMES, NUM_CLASSES
from deepacc_d2.karyotype.cell import ReviewRules
from deepacc_d2.karyotype.run import cell_outputs, save_cell, write_case

from detectron2.config import get_cfg

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
HEIGHT, WIDTH = 260, 520


def normal(sex="XY"):
    return [c for c in CLASS_NAMES[:22] for _ in range(2)] + list(sex)


def grid_boxes(n):
    """One 12x30 box per chromosome, 12 to a row; the image's bottom 70 px stay empty."""
    x, y = 40.0 * (np.arange(n) % 12) + 10, 50.0 * (np.arange(n) // 12) + 5
    return np.stack([x, y, x + 12, y + 30], axis=1)


def make_case(root, cells):
    """A case folder as ``deepacc karyotype`` writes it, from hand-built detections: per cell
    an image (dark rods on white at the boxes) and confident calls of ``names``."""
    cfg = get_cfg()
    add_deepacc_config(cfg)
    rules = ReviewRules.from_config(cfg)
    records = {}
    os.makedirs(root / "images", exist_ok=True)
    for name, names in cells.items():
        boxes = grid_boxes(len(names))
        image = np.full((HEIGHT, WIDTH, 3), 235, np.uint8)
        for x1, y1, x2, y2 in boxes.astype(int):
            image[y1:y2, x1:x2] = 60
        path = str(root / "images" / f"{name}.png")
        Image.fromarray(image).save(path)
        classes = np.array([CLASS_NAMES.index(c) for c in names])
        class_scores = np.zeros((len(names), NUM_CLASSES))
        class_scores[np.arange(len(names)), classes] = 0.97
        class_scores[np.arange(len(names)), (classes + 1) % NUM_CLASSES] = 0.02
        detections = {
            "boxes": boxes,
            "classes": classes,
            "scores": class_scores[np.arange(len(names)), classes],
            "class_scores": class_scores,
            "margins": np.full(len(names), np.inf),
        }
        record, picture = cell_outputs(image, detections, rules, "all")
        records[path] = save_cell(str(root), name, path, image.shape, record, picture)
    write_case(str(root), records, {}, rules, "all")
    return root


@pytest.fixture
def review_case(tmp_path):
    """A case of two cells, "cellA" 46,XY and "cellB" 45,XY,-21, as deepacc karyotype writes
    it (review page tests)."""
    monosomy = normal()
    monosomy.remove("21")
    return make_case(tmp_path / "case", {"cellA": normal(), "cellB": monosomy})
