"""`deepacc predict` on a folder with an unreadable file, a 16-bit image and two files of one
stem: the bad file is named, the rest done under distinct names, and the exit code says that
a file failed."""

import json
import os

import numpy as np
import torch
from PIL import Image

import deepacc_d2  # noqa: F401
from deepacc_d2.app.cli import main
from deepacc_d2.app.config import setup_cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml")


def test_predict_skips_bad_file_and_keeps_the_batch(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    cfg = setup_cfg(CONFIG, [])
    weights = str(tmp_path / "model.pth")
    DetectionCheckpointer(build_model(cfg), save_dir=str(tmp_path)).save("model")

    images = tmp_path / "slides"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "a.jpg", "c.jpg"):
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(images / name)
    Image.fromarray(rng.integers(0, 4095, (120, 160), dtype=np.uint16)).save(images / "d.tif")
    (images / "b.png").write_bytes(b"not a png at all")
    out = tmp_path / "out"

    code = main(
        [
            "predict",
            "--config-file",
            CONFIG,
            "--weights",
            weights,
            "--output",
            str(out),
            "--score-thresh",
            "0.0",
            str(images),
            "--opts",
            "INPUT.MIN_SIZE_TEST",
            "120",
            "INPUT.MAX_SIZE_TEST",
            "160",
        ]
    )
    assert code == 1  # one file failed
    with open(out / "predictions.json") as f:
        result = json.load(f)
    assert sorted(os.path.basename(p) for p in result["predictions"]) == [
        "a.jpg",
        "a.png",
        "c.jpg",
        "d.tif",
    ]
    ((bad, message),) = result["errors"].items()
    assert bad.endswith("b.png") and "b.png: cannot read image" in message
    assert sorted(os.listdir(out)) == [
        "a_jpg.png",
        "a_png.png",
        "c.png",
        "d.png",
        "predictions.json",
    ]
    for records in result["predictions"].values():
        for r in records:
            assert r["class"] in deepacc_d2.CLASS_NAMES and len(r["bbox_xyxy"]) == 4
