"""Export (TorchScript and ONNX): trace at one size, run at another, save and reload, compare with
the eager model."""

import os

import numpy as np
import pytest
import torch

import deepacc_d2  # noqa: F401
from deepacc_d2.config import setup_cfg
from deepacc_d2.export import ExportedModel, export_model

from detectron2.data import transforms as T
from detectron2.modeling import build_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _eager(model, image):
    with torch.no_grad():
        return model.inference([{"image": image}], do_postprocess=False)[0]


SECOND_LOOK = ["MODEL.SECOND_LOOK.ENABLED", "True", "MODEL.SECOND_LOOK.WIDTH", "8"]


@pytest.mark.parametrize("extension", [".ts", ".onnx"])
@pytest.mark.parametrize(
    "config, opts",
    [
        ("f_deepacc_cpu.yaml", []),
        ("a_faster_rcnn_cpu.yaml", []),
        ("f_deepacc_cpu.yaml", SECOND_LOOK),
    ],
    ids=["deepacc", "faster_rcnn", "second_look"],
)
@pytest.mark.slow
def test_trace_one_size_run_another(tmp_path, config, opts, extension):
    if extension == ".onnx":  # the optional [onnx] extra
        pytest.importorskip("onnx", reason="ONNX export needs the onnx package (.[onnx])")
        pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (.[onnx])")
    torch.manual_seed(0)
    # score threshold 0 so that a random model still yields detections to compare
    cfg = setup_cfg(
        os.path.join(REPO, "configs", "cpu", config),
        [
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
            "0.0",
            "INPUT.MIN_SIZE_TEST",
            "200",
            "INPUT.MAX_SIZE_TEST",
            "256",
        ]
        + opts,
    )
    model = build_model(cfg).eval()
    if opts == SECOND_LOOK:
        # an untrained classifier names every crop ~1/24 each: near-tied scores, whose order
        # the exported runtimes' last float bits may swap; decisive names compare exactly
        torch.nn.init.normal_(model.roi_heads.second_look.classifier.net.linear.weight, std=1.0)
    path = str(tmp_path / f"model{extension}")
    info = export_model(model, torch.rand(3, 160, 224) * 255, path, cfg)
    assert info["outputs"] == [
        "all_classes",
        "class_scores",
        "pred_boxes",
        "pred_classes",
        "scores",
        "top1",
    ]

    exported = ExportedModel(path)  # reloaded from disk
    image = torch.rand(3, 200, 256) * 255  # another size than traced
    got = {k: torch.as_tensor(v) for k, v in exported.raw(image).items()}
    want = _eager(model, image)
    assert len(want) > 0 and got["pred_boxes"].shape == want.pred_boxes.tensor.shape
    assert torch.allclose(got["pred_boxes"], want.pred_boxes.tensor, atol=1e-3)
    # the second look's classifier, a conv net, adds its own rounding (measured: 1.4e-5)
    atol = 1e-4 if opts == SECOND_LOOK else 1e-5
    assert torch.allclose(got["scores"], want.scores, atol=atol)
    assert torch.equal(got["pred_classes"], want.pred_classes)
    assert torch.allclose(got["class_scores"], want.class_scores, atol=atol)
    assert torch.equal(got["top1"], want.top1) and torch.equal(got["all_classes"], want.all_classes)


def test_unknown_format_is_refused(tmp_path):
    cfg = setup_cfg(os.path.join(REPO, "configs", "cpu", "a_faster_rcnn_cpu.yaml"))
    with pytest.raises(ValueError, match="model.pt"):
        export_model(build_model(cfg).eval(), torch.rand(3, 64, 64), str(tmp_path / "model.pt"))


@pytest.mark.slow
def test_wrapper_resizes_like_detectron2_and_scales_boxes_back(tmp_path):
    torch.manual_seed(0)
    cfg = setup_cfg(
        os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml"),
        ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"],
    )  # MIN 480, MAX 640
    model = build_model(cfg).eval()
    path = str(tmp_path / "model.ts")
    export_model(model, torch.rand(3, 240, 320) * 255, path, cfg)
    exported = ExportedModel(path)
    resize = T.ResizeShortestEdge(480, 640)
    for h, w in [(600, 800), (1200, 1600), (700, 685), (383, 1360)]:
        t = resize.get_transform(np.zeros((h, w, 3), np.uint8))
        assert exported._resized_shape(h, w) == (t.new_h, t.new_w)
    # 300 x 400 -> 480 x 640: boxes come back divided by 1.6
    image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    out = exported(image)
    import cv2

    resized = cv2.resize(image, (640, 480), interpolation=cv2.INTER_LINEAR)
    raw = exported.raw(torch.as_tensor(resized.transpose(2, 0, 1).copy()).float())
    assert np.allclose(out["boxes"], raw["pred_boxes"] / 1.6, atol=1e-4)
    assert out["class_scores"].shape[1] == 24
    assert out["top1"].dtype == bool and out["top1"].shape == out["scores"].shape
