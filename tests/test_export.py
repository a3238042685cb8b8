"""Export (TorchScript and ONNX): trace at one size, run at another, save and reload, compare with
the eager model."""

import copy
import os

import numpy as np
import pytest
import torch

import deepacc_d2  # noqa: F401
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.app.export import ExportedDetector, ExportedModel, export_model
from deepacc_d2.engine.predictor import fold_batchnorm, for_cpu_inference, model_input

from detectron2.data import transforms as T
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from detectron2.modeling import build_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _eager(model, image):
    with torch.no_grad():
        return model.inference([{"image": image}], do_postprocess=False)[0]


SECOND_LOOK = ["MODEL.SECOND_LOOK.ENABLED", "True", "MODEL.SECOND_LOOK.WIDTH", "8"]
# traced, every candidate is named before the NMS; eager, only the survivors, round by round
SURVIVORS = [
    "MODEL.SECOND_LOOK.NOT_CHROMOSOME",
    "True",
    "MODEL.SECOND_LOOK.FOREGROUND_WEIGHT",
    "1.0",
    "MODEL.SECOND_LOOK.NMS_THRESH",
    "0.7",
]

MIRROR = ["MODEL.META_ARCHITECTURE", "MirrorViewRCNN"]


@pytest.mark.parametrize("extension", [".ts", ".onnx"])
@pytest.mark.parametrize(
    "config, opts",
    [
        ("f_deepacc_cpu.yaml", []),
        ("a_faster_rcnn_cpu.yaml", []),
        ("f_deepacc_cpu.yaml", SECOND_LOOK),
        ("f_deepacc_cpu.yaml", SECOND_LOOK + ["MODEL.SECOND_LOOK.SHARE_IOU", "0.9"]),
        ("f_deepacc_cpu.yaml", SECOND_LOOK + SURVIVORS),
        ("f_deepacc_cpu.yaml", SECOND_LOOK + SURVIVORS + MIRROR),
    ],
    ids=["deepacc", "faster_rcnn", "second_look", "second_look_shared", "second_look_nms"]
    + ["mirror"],
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
    if "MODEL.SECOND_LOOK.ENABLED" in opts:
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
    atol = 1e-4 if "MODEL.SECOND_LOOK.ENABLED" in opts else 1e-5
    assert torch.allclose(got["scores"], want.scores, atol=atol)
    assert torch.equal(got["pred_classes"], want.pred_classes)
    assert torch.allclose(got["class_scores"], want.class_scores, atol=atol)
    assert torch.equal(got["top1"], want.top1) and torch.equal(got["all_classes"], want.all_classes)


def test_unknown_format_is_refused(tmp_path):
    cfg = setup_cfg(os.path.join(REPO, "configs", "cpu", "a_faster_rcnn_cpu.yaml"))
    with pytest.raises(ValueError, match="model.pt"):
        export_model(build_model(cfg).eval(), torch.rand(3, 64, 64), str(tmp_path / "model.pt"))


def test_model_input_is_detectron2s_predictor_preprocessing():
    cfg = setup_cfg(os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml"))  # 480 / 640
    image = np.random.default_rng(0).integers(0, 255, (383, 1360, 3), dtype=np.uint8)
    # DefaultPredictor.__call__: ResizeShortestEdge([MIN, MIN], MAX), float32 CHW
    resized = T.ResizeShortestEdge([480, 480], 640).get_transform(image).apply_image(image)
    want = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
    got = model_input(image, cfg.INPUT)
    assert got["image"].shape == (3, 180, 640)  # the longest side capped: 1360 -> 640
    assert torch.equal(got["image"], want) and (got["height"], got["width"]) == (383, 1360)


def _trained_statistics(norm):
    norm.running_mean.uniform_(-1, 1)
    norm.running_var.uniform_(0.5, 2)
    norm.weight.data.uniform_(0.5, 2)
    norm.bias.data.uniform_(-1, 1)
    return norm


def test_folded_batchnorm_computes_the_same_function():
    torch.manual_seed(0)
    convs = torch.nn.Sequential(
        Conv2d(3, 8, 3, padding=1, bias=False, norm=_trained_statistics(torch.nn.BatchNorm2d(8))),
        Conv2d(8, 8, 1, bias=True, norm=_trained_statistics(FrozenBatchNorm2d(8))),
        Conv2d(8, 4, 3, norm=torch.nn.GroupNorm(2, 4)),
    )
    x = torch.randn(2, 3, 12, 12)
    with pytest.raises(ValueError, match="training mode"):
        fold_batchnorm(convs)
    convs.eval()
    dropped = copy.deepcopy(convs)  # what leaving the BatchNorm out would compute
    dropped[0].norm = dropped[1].norm = None
    with torch.no_grad():
        want = convs(x)
        fold_batchnorm(convs)
        got = convs(x)
        assert not torch.allclose(dropped(x), want, atol=1e-2)
    assert convs[0].norm is None and convs[1].norm is None
    assert isinstance(convs[2].norm, torch.nn.GroupNorm)  # not a per-channel affine map
    assert torch.allclose(got, want, atol=1e-5)


def test_a_model_prepared_for_the_cpu_gives_its_detections():
    torch.manual_seed(0)
    cfg = setup_cfg(os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml"), SECOND_LOOK)
    model = build_model(cfg).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # the crop classifier's
            _trained_statistics(m)
    image = torch.rand(3, 160, 208) * 255
    want = _eager(model, image)
    got = _eager(for_cpu_inference(model), image)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert len(want) > 0 and len(got) == len(want)
    assert torch.allclose(got.pred_boxes.tensor, want.pred_boxes.tensor, atol=1e-2)
    assert torch.allclose(got.scores, want.scores, atol=1e-4)


def test_exported_detector_gives_the_eager_models_detections(tmp_path):
    torch.manual_seed(0)
    cfg = setup_cfg(
        os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml"),
        ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"],
    )  # MIN 480, MAX 640
    model = build_model(cfg).eval()
    path = str(tmp_path / "model.ts")
    export_model(model, torch.rand(3, 240, 320) * 255, path, cfg)
    # 300 x 400 -> 480 x 640: the eager model's boxes come back divided by 1.6
    image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    inputs = [model_input(image, cfg.INPUT)]
    with torch.no_grad():
        want = model(inputs)[0]["instances"]
    got = ExportedDetector(path)(inputs)[0]["instances"]  # reloaded from disk
    assert len(want) > 0 and got.image_size == want.image_size == (300, 400)
    assert torch.allclose(got.pred_boxes.tensor, want.pred_boxes.tensor, atol=1e-3)
    assert torch.allclose(got.scores, want.scores, atol=1e-5)
    assert torch.equal(got.pred_classes, want.pred_classes)
    assert torch.equal(got.top1, want.top1) and got.top1.dtype == torch.bool
    out = ExportedModel(path)(image)  # the same, as arrays, from the BGR image
    assert np.allclose(out["boxes"], want.pred_boxes.tensor.numpy(), atol=1e-3)
    assert out["class_scores"].shape == (len(want), 24)


def _matched(want, got, min_score):
    """The eager records (score >= min_score) each with its exported record of the same class
    and box (greedy, by box distance); None where one has none."""
    pairs = []
    for w in (r for r in want if r["score"] >= min_score):
        same = [g for g in got if g["class"] == w["class"]]
        dist = [np.abs(np.subtract(g["bbox_xyxy"], w["bbox_xyxy"])).max() for g in same]
        pairs.append((w, same[int(np.argmin(dist))] if same and min(dist) < 0.5 else None))
    return pairs


@pytest.mark.slow
def test_exported_shipped_model_predicts_and_karyotypes_as_the_eager_one(cil24, tmp_path):
    """The shipped model exported by ``deepacc export`` gives ``deepacc predict`` (TorchScript)
    and ``deepacc karyotype`` (ONNX) the eager model's detections and calls on real cells."""
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package (.[onnx])")
    pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (.[onnx])")
    import json

    from deepacc_d2.app.cli import main
    from deepacc_d2.app.model_zoo import resolve_model
    from deepacc_d2.data.datasets import load_cil24_voc

    images = [d["file_name"] for d in load_cil24_voc(cil24, "val")[:2]]  # never trained on
    config, _, further = resolve_model("cil-r18-crops")
    exported = {}
    for ext in (".ts", ".onnx"):
        exported[ext] = str(tmp_path / f"model{ext}")
        out = ["--output", exported[ext], "--sample", images[0]]
        assert main(["export", "--weights", "cil-r18-crops", *out]) == 0
    file_model = ["--config-file", config, "--opts", *further]  # the judge's file, for counting
    runs = {
        "eager": ["--weights", "cil-r18-crops"],
        ".ts": ["--weights", exported[".ts"], *file_model],
        ".onnx": ["--weights", exported[".onnx"], *file_model],
    }
    for name in ("eager", ".ts"):
        argv = ["predict", "--output", str(tmp_path / f"p{name}"), "--pictures", "none"]
        assert main(argv + ["--workers", "1", *runs[name], "--", *images]) == 0
    want, got = (
        json.loads((tmp_path / f"p{name}" / "predictions.json").read_text())["predictions"]
        for name in ("eager", ".ts")
    )
    for image in images:
        pairs = _matched(want[image], got[image], min_score=0.05)
        assert len(pairs) >= 40  # a metaphase's chromosomes and more
        assert all(g is not None and abs(g["score"] - w["score"]) <= 2e-3 for w, g in pairs)
        # below 0.05 only candidates near the 0.02 cut may be on one side only
        assert abs(len(want[image]) - len(got[image])) <= 3
    for name in ("eager", ".onnx"):
        argv = ["karyotype", "--output", str(tmp_path / f"k{name}"), "--pictures", "none"]
        assert main(argv + ["--workers", "1", *runs[name], "--", *images]) == 0
    calls = []
    for name in ("eager", ".onnx"):
        cells = sorted((tmp_path / f"k{name}").glob("*_karyotype.json"))
        calls.append({f.name: json.loads(f.read_text()) for f in cells})
    assert len(calls[0]) == 2 and calls[0].keys() == calls[1].keys()
    for cell, want in calls[0].items():
        got = calls[1][cell]
        assert want["total"] >= 40 and got["karyotype"] == want["karyotype"]
        names = [[d["class"] for d in c["detections"]] for c in (want, got)]
        assert names[0] == names[1]  # the same chromosomes counted, named alike
