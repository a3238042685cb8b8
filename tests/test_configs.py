"""Every YAML under configs/ loads (with _BASE_ chains) and builds its model on the CPU;
``setup_cfg`` and the schedule in epochs."""

import glob
import os

import pytest
import torch

import deepacc_d2  # noqa: F401  (compatibility fixes before detectron2)
from deepacc_d2.app.config import add_application_config, setup_cfg
from deepacc_d2.config import epoch_schedule

from detectron2.config import get_cfg
from detectron2.modeling import GeneralizedRCNN, build_model

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
ALL_CONFIGS = sorted(glob.glob(os.path.join(CONFIGS, "**", "*.yaml"), recursive=True))


def load(path):
    cfg = get_cfg()
    add_application_config(cfg)
    cfg.merge_from_file(path)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.freeze()
    return cfg


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: os.path.relpath(p, CONFIGS))
def test_at_most_three_base_levels(path):
    import yaml

    levels = 0
    while True:
        with open(path) as f:
            base = (yaml.safe_load(f) or {}).get("_BASE_")
        if not base:
            break
        path = os.path.join(os.path.dirname(path), base)
        levels += 1
    assert levels <= 3


def test_every_row_has_its_config():
    names = {os.path.relpath(p, CONFIGS) for p in ALL_CONFIGS}
    for row in [
        "a_faster_rcnn",
        "b_faster_rcnn_sep",
        "c_aam",
        "d_siamese",
        "e_aam_siamese",
        "f_deepacc",
    ]:
        assert f"table1/{row}.yaml" in names
    for row in ["retinanet_R101_FPN", "faster_rcnn_R101_FPN", "deepacc_R101_FPN"]:
        assert f"table2/{row}.yaml" in names
    assert {"cpu/a_faster_rcnn_cpu.yaml", "cpu/f_deepacc_cpu.yaml"} <= names


TABLE1 = ["a_faster_rcnn", "b_faster_rcnn_sep", "c_aam", "d_siamese", "e_aam_siamese", "f_deepacc"]


@pytest.mark.parametrize("row", TABLE1)
def test_table1_hyperparameters(row):
    # each row's switches against the paper's table: tests/test_ablation.py
    d = load(os.path.join(CONFIGS, "table1", row + ".yaml")).MODEL.DEEPACC
    assert (d.AAM.SCALE, d.AAM.MARGIN) == (64.0, 0.25)
    assert (d.AAM_LOSS_WEIGHT, d.CE_LOSS_WEIGHT, d.GIA_LOSS_WEIGHT) == (0.1, 1.0, 0.1)


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: os.path.relpath(p, CONFIGS))
def test_config_builds(path):
    cfg = load(path)
    model = build_model(cfg)
    assert type(model).__name__ == cfg.MODEL.META_ARCHITECTURE
    if isinstance(model, GeneralizedRCNN):
        assert type(model.roi_heads).__name__ == cfg.MODEL.ROI_HEADS.NAME


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: os.path.relpath(p, CONFIGS))
def test_the_second_look_keeps_every_box_the_count_could_take(path):
    # boxes below MIN_FOREGROUND are background: a higher threshold than the count's would
    # lose candidates the count would have taken
    cfg = load(path)
    look, count = cfg.MODEL.SECOND_LOOK, cfg.TEST.KARYOTYPE
    if look.ENABLED and count.COUNT_BY == "foreground":
        assert look.MIN_FOREGROUND <= count.COUNT_FG_THRESH, path


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
    add_application_config(cfg)
    cfg.merge_from_file(path)
    matches = [conv for key, conv in WEIGHTS_CONVENTION.items() if key in cfg.MODEL.WEIGHTS]
    if not cfg.MODEL.WEIGHTS:
        return  # from scratch: any normalisation trains
    assert matches, f"unknown weights family {cfg.MODEL.WEIGHTS}: add its convention here"
    fmt, std = matches[0]
    assert cfg.INPUT.FORMAT == fmt, path
    assert cfg.MODEL.PIXEL_STD == pytest.approx(std), path


def test_setup_cfg_merges_resolves_and_freezes(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = os.path.join(CONFIGS, "cpu", "f_deepacc_cpu.yaml")
    cfg = setup_cfg(
        path, ["MODEL.DEVICE", "cuda", "TEST.KARYOTYPE.NMS_THRESH", "0.6"], weights="model.pth"
    )
    assert cfg.is_frozen()
    assert cfg.MODEL.DEEPACC.GIA.ENABLED  # the file's keys
    assert cfg.TEST.KARYOTYPE.NMS_THRESH == 0.6  # the overrides
    assert cfg.MODEL.WEIGHTS == "model.pth"
    assert cfg.MODEL.DEVICE == "cpu"  # no CUDA here: the CPU
    assert setup_cfg(path).MODEL.WEIGHTS == ""  # weights=None keeps the file's


def test_setup_cfg_converts_epochs_only_for_training():
    from detectron2.data import DatasetCatalog

    name = "_test_setup_cfg_ten_images"
    DatasetCatalog.register(name, lambda: [{}] * 10)
    try:
        opts = [
            "DATASETS.TRAIN",
            f"('{name}',)",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "SOLVER.EPOCHS",
            "4",
            "SOLVER.EPOCH_STEPS",
            "(3,)",
            "SOLVER.MAX_ITER",
            "7",
        ]
        path = os.path.join(CONFIGS, "cpu", "f_deepacc_cpu.yaml")
        cfg = setup_cfg(path, opts, training=True)
        # 10 images, batch 2: 5 iterations per epoch
        assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS) == (20, (15,))
        assert setup_cfg(path, opts).SOLVER.MAX_ITER == 7
    finally:
        DatasetCatalog.remove(name)


def test_epoch_schedule_paper_recipe():
    # 1500 images, batch 1: 1500 iters/epoch; 24 epochs; steps after epochs 16 and 22
    assert epoch_schedule(24, (16, 22), 1500, 1) == (36000, (24000, 33000))
    # 101 images, batch 2: ceil(50.5) = 51 iters/epoch
    assert epoch_schedule(24, (16, 22), 101, 2) == (1224, (816, 1122))
    # a step at or past the last epoch is dropped
    assert epoch_schedule(10, (16, 22), 10, 1) == (100, ())
    with pytest.raises(ValueError):
        epoch_schedule(24, (16,), 0, 1)


def test_the_application_adds_its_own_keys():
    core, app = get_cfg(), get_cfg()
    deepacc_d2.add_deepacc_config(core)
    add_application_config(app)
    # the metrics' selection is the core's; how the karyotype step counts is the application's
    assert core.TEST.KARYOTYPE.SCORE_THRESH == app.TEST.KARYOTYPE.SCORE_THRESH == 0.5
    assert "COUNT_JUDGE" not in core.TEST.KARYOTYPE and app.TEST.KARYOTYPE.COUNT_JUDGE == ""
    added = set(app.TEST.KARYOTYPE) - set(core.TEST.KARYOTYPE)
    assert {"COUNT_BY", "ASSIGN", "EXTRA_COPY_COST", "REVIEW_LOW_SCORE"} <= added
    assert set(core.MODEL.DEEPACC) == set(app.MODEL.DEEPACC)  # nothing else differs
