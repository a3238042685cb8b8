"""A case at the model's speed: the pipelined commands write exactly what the plain ones do,
read like detectron2's DefaultPredictor, and evaluation pictures reuse the metric pass."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import deepacc_d2  # noqa: F401
from deepacc_d2.case import list_images, predict_each
from deepacc_d2.config import setup_cfg
from deepacc_d2.inference import evaluate, load_model, predict_files
from deepacc_d2.karyotype.run import karyotype_files

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from detectron2.structures import BoxMode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml")
SMALL = ["INPUT.MIN_SIZE_TEST", "120", "INPUT.MAX_SIZE_TEST", "160"]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A random model's weights (scores kept from 0), and a folder of 4 images + 1 broken."""
    root = tmp_path_factory.mktemp("case")
    torch.manual_seed(0)
    cfg = setup_cfg(CONFIG, SMALL)
    DetectionCheckpointer(build_model(cfg), save_dir=str(root)).save("model")
    images = root / "slides"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (120, 150 + 10 * i, 3), dtype=np.uint8)).save(
            images / f"cell{i}.png"
        )
    (images / "broken.png").write_bytes(b"not a png")
    opts = SMALL + [
        "TEST.KARYOTYPE.SCORE_THRESH",
        "0.02",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        "0.01",
    ]
    return setup_cfg(CONFIG, opts, str(root / "model.pth")), str(images)


def _files(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".png"):
            out[name] = np.asarray(Image.open(path))
        elif name.endswith(".json"):
            with open(path) as f:
                out[name] = json.load(f)
        else:
            with open(path) as f:
                out[name] = f.read()
    return out


def _same(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        if isinstance(a[name], np.ndarray):
            assert np.array_equal(a[name], b[name]), name
        else:
            assert a[name] == b[name], name


@pytest.mark.slow
def test_reading_is_detectron2s_default_predictor(case):
    cfg, folder = case
    model = load_model(cfg)
    predictor = DefaultPredictor(cfg)
    seen = 0
    for path, _, image, instances, error in predict_each(cfg, model, list_images([folder])):
        if error is not None:
            assert path.endswith("broken.png") and "cannot read image" in error
            continue
        theirs = predictor(image)["instances"].to("cpu")
        assert len(instances) == len(theirs) > 0
        assert torch.equal(instances.pred_boxes.tensor, theirs.pred_boxes.tensor)
        assert torch.equal(instances.scores, theirs.scores)
        seen += 1
    assert seen == 4


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "karyotype"])
def test_pipelined_outputs_equal_the_plain_ones(case, tmp_path, command):
    cfg, folder = case
    outputs = {}
    for background in (True, False):
        out = str(tmp_path / str(background))
        timings = {}
        if command == "predict":
            predict_files(cfg, [folder], out, background=background, timings=timings)
        else:
            karyotype_files(cfg, [folder], out, background=background, timings=timings)
        outputs[background] = _files(out)
        assert timings["model"] > 0 and timings["pictures"] > 0 and timings["start-up"] > 0
    _same(outputs[True], outputs[False])
    pictures = [n for n in outputs[True] if n.endswith(".png")]
    assert len(pictures) == 4


def test_pictures_none_writes_records_only(case, tmp_path):
    cfg, folder = case
    summary = karyotype_files(cfg, [folder], str(tmp_path), pictures="none")
    assert summary["cells_read"] == 4 and len(summary["failed"]) == 1
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".png")]
    with pytest.raises(ValueError, match="pictures='some'"):
        predict_files(cfg, [folder], str(tmp_path), pictures="some")


def test_evaluation_pictures_come_from_the_metric_pass(case, tmp_path, monkeypatch):
    cfg, folder = case
    dicts = [
        {
            "file_name": p,
            "image_id": i,
            "height": 120,
            "width": 150 + 10 * i,
            "annotations": [
                {"bbox": [10, 10, 30, 60], "bbox_mode": BoxMode.XYXY_ABS, "category_id": i}
            ],
        }
        for i, p in enumerate(sorted(os.path.join(folder, f"cell{i}.png") for i in range(3)))
    ]
    name = "case_eval_tiny"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=list(deepacc_d2.CLASS_NAMES))
    model = load_model(cfg)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    results = evaluate(cfg, model, name, str(tmp_path), visualize=2)
    assert "mAP" in results["karyotype"]
    assert len(calls) == 3  # one forward pass per image, pictures included
    drawn = sorted(n for n in os.listdir(tmp_path) if n.endswith("_pred.png"))
    assert drawn == ["cell0_pred.png", "cell1_pred.png"]
