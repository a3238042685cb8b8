"""Every YAML under configs/ loads (with _BASE_ chains) and builds its model on the CPU."""
import glob
import os

import deepacc_d2  # noqa: F401  (compatibility fixes before detectron2)
import pytest
from detectron2.config import get_cfg
from detectron2.modeling import build_model

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
ALL_CONFIGS = sorted(glob.glob(os.path.join(CONFIGS, "**", "*.yaml"), recursive=True))


def load(path):
    cfg = get_cfg()
    deepacc_d2.add_deepacc_config(cfg)
    cfg.merge_from_file(path)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.freeze()
    return cfg


def test_every_row_has_its_config():
    names = {os.path.relpath(p, CONFIGS) for p in ALL_CONFIGS}
    for row in ["a_faster_rcnn", "b_faster_rcnn_sep", "c_aam", "d_siamese", "e_aam_siamese",
                "f_deepacc"]:
        assert f"table1/{row}.yaml" in names
    for row in ["retinanet_R101_FPN", "faster_rcnn_R101_FPN", "deepacc_R101_FPN"]:
        assert f"table2/{row}.yaml" in names
    assert {"cpu/a_faster_rcnn_cpu.yaml", "cpu/f_deepacc_cpu.yaml"} <= names


# (switches) per row of Table 1: SEPARATE_BRANCHES, AAM, SIAMESE, GIA.
TABLE1 = {
    "a_faster_rcnn": (False, False, False, False),
    "b_faster_rcnn_sep": (True, False, False, False),
    "c_aam": (True, True, False, False),
    "d_siamese": (True, False, True, False),
    "e_aam_siamese": (True, True, True, False),
    "f_deepacc": (True, True, True, True),
}


@pytest.mark.parametrize("row", sorted(TABLE1))
def test_table1_switches(row):
    d = load(os.path.join(CONFIGS, "table1", row + ".yaml")).MODEL.DEEPACC
    assert (d.SEPARATE_BRANCHES, d.AAM.ENABLED, d.SIAMESE.ENABLED, d.GIA.ENABLED) == TABLE1[row]
    assert (d.AAM.SCALE, d.AAM.MARGIN) == (64.0, 0.25)
    assert (d.AAM_LOSS_WEIGHT, d.CE_LOSS_WEIGHT, d.GIA_LOSS_WEIGHT) == (0.1, 1.0, 0.1)


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: os.path.relpath(p, CONFIGS))
def test_config_builds(path):
    cfg = load(path)
    model = build_model(cfg)
    assert type(model).__name__ == cfg.MODEL.META_ARCHITECTURE
    if cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN":
        assert type(model.roi_heads).__name__ == cfg.MODEL.ROI_HEADS.NAME



# The input convention of each family of detectron2 ImageNet weights (detectron2's
# config/defaults.py and MODEL_ZOO.md): MSRA (caffe) models take BGR with std 1, FAIR and
# torchvision models take RGB with ImageNet's std.
WEIGHTS_CONVENTION = {
    "/MSRA/": ("BGR", [1.0, 1.0, 1.0]),
    "/FAIR/": ("RGB", [57.375, 57.120, 58.395]),
    "torchvision": ("RGB", [58.395, 57.120, 57.375]),
}


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: os.path.relpath(p, CONFIGS))
def test_input_normalisation_matches_the_weights(path):
    cfg = get_cfg()
    deepacc_d2.add_deepacc_config(cfg)
    cfg.merge_from_file(path)
    matches = [conv for key, conv in WEIGHTS_CONVENTION.items() if key in cfg.MODEL.WEIGHTS]
    if not cfg.MODEL.WEIGHTS:
        return  # from scratch: any normalisation trains
    assert matches, f"unknown weights family {cfg.MODEL.WEIGHTS}: add its convention here"
    fmt, std = matches[0]
    assert cfg.INPUT.FORMAT == fmt, path
    assert cfg.MODEL.PIXEL_STD == pytest.approx(std), path
