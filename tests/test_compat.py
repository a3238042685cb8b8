"""Each compatibility fix: does its job where needed, changes nothing where not."""

import glob
import logging
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

import deepacc_d2  # noqa: F401
from deepacc_d2 import compat


def _has_compiled_extension():
    import detectron2

    return bool(glob.glob(os.path.join(os.path.dirname(detectron2.__file__), "_C*.so")))


def test_extension_detection_matches_disk():
    assert compat.has_detectron2_extension() == _has_compiled_extension()


@pytest.mark.skipif(_has_compiled_extension(), reason="full detectron2 build: no stand-in")
def test_missing_extension_raises_clear_error():
    # layers/ imports _C at module load: importing must work, using a rotated op must not.
    from detectron2.layers import nms_rotated
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes = torch.tensor([[5.0, 5.0, 4.0, 4.0, 0.0]])
    with pytest.raises(compat.MissingDetectron2Extension, match="from source"):
        pairwise_iou_rotated(boxes, boxes)
    with pytest.raises(Exception, match="from source"):
        nms_rotated(boxes, torch.tensor([1.0]), 0.5)
    # default_setup probes _C through collect_env_info: it must still produce its table.
    from detectron2.utils.collect_env import collect_env_info

    assert "not built" in collect_env_info()


def test_missing_extension_fix_is_noop_when_extension_present(monkeypatch):
    real = types.ModuleType("detectron2._C")
    monkeypatch.setitem(sys.modules, "detectron2._C", real)
    assert compat._fix_missing_extension() is False
    assert sys.modules["detectron2._C"] is real


def test_pillow_linear(monkeypatch):
    from PIL import Image

    # the detectron2 transform that uses it as a default argument imports and works
    from detectron2.data.transforms import ExtentTransform

    out = ExtentTransform((0, 0, 4, 4), (2, 2)).apply_image(np.zeros((4, 4, 3), np.uint8))
    assert out.shape == (2, 2, 3)
    monkeypatch.delattr(Image, "LINEAR", raising=False)
    assert compat._fix_pillow_linear() is True
    assert Image.LINEAR == Image.BILINEAR
    monkeypatch.setattr(Image, "LINEAR", "sentinel", raising=False)
    assert compat._fix_pillow_linear() is False
    assert Image.LINEAR == "sentinel"


def test_numpy_aliases(monkeypatch):
    monkeypatch.delattr(np, "int", raising=False)
    assert "int" in compat._fix_numpy_aliases()
    assert np.int is int
    sentinel = object()
    monkeypatch.setattr(np, "int", sentinel, raising=False)
    assert "int" not in compat._fix_numpy_aliases()
    assert np.int is sentinel
    # detectron2 0.6 code that uses the aliases runs
    from detectron2.structures.masks import polygons_to_bitmask

    m = polygons_to_bitmask([np.array([0, 0, 4, 0, 4, 4, 0, 4], float)], 6, 6)
    assert m.dtype == bool and m.sum() == 16


def test_pkg_resources(monkeypatch):
    from detectron2.model_zoo import model_zoo

    monkeypatch.setitem(sys.modules, "pkg_resources", None)  # import now raises ImportError
    monkeypatch.setattr(model_zoo, "pkg_resources", None)
    assert compat._fix_pkg_resources() is True
    assert sys.modules["pkg_resources"] is None  # nothing partial left for other libraries
    path = model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml")
    assert os.path.isfile(path) and path.endswith("faster_rcnn_R_50_FPN_1x.yaml")
    # with a real pkg_resources nothing is touched
    fake = types.ModuleType("pkg_resources")
    monkeypatch.setitem(sys.modules, "pkg_resources", fake)
    monkeypatch.setattr(model_zoo, "pkg_resources", fake)
    assert compat._fix_pkg_resources() is False and model_zoo.pkg_resources is fake


def test_checkpoint_with_python_objects_loads(tmp_path, caplog):
    from detectron2.checkpoint import DetectionCheckpointer

    model = torch.nn.Linear(2, 3)
    safe = tmp_path / "safe.pth"
    torch.save({"model": model.state_dict(), "iteration": 7}, safe)
    unsafe = tmp_path / "unsafe.pth"
    # an argparse.Namespace (as some training scripts store) is refused by weights_only=True
    import argparse

    torch.save({"model": model.state_dict(), "args": argparse.Namespace(lr=0.02)}, unsafe)
    if compat._weights_only_is_default():
        with pytest.raises(pickle.UnpicklingError):
            torch.load(unsafe)

    target = torch.nn.Linear(2, 3)
    with caplog.at_level(logging.WARNING):
        extra = DetectionCheckpointer(target).load(str(safe))
    assert extra["iteration"] == 7 and "weights_only" not in caplog.text
    assert torch.equal(target.weight, model.weight)
    target2 = torch.nn.Linear(2, 3)
    extra = DetectionCheckpointer(target2).load(str(unsafe))
    assert extra["args"].lr == 0.02
    assert torch.equal(target2.bias, model.bias)


@pytest.mark.slow
def test_deepacc_command_prints_no_jit_script_deprecation():
    # A user's terminal shows only what concerns them: not detectron2 0.6's import-time
    # torch.jit.script calls, which today's torch reports as deprecated.
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "deepacc_d2.app.cli", "karyotype", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "usage: deepacc karyotype" in proc.stdout
    assert "torch.jit.script" not in proc.stderr, proc.stderr
