"""
Export a trained model to TorchScript by tracing, along detectron2's deployment path
(``TracingAdapter`` + ``torch.jit.trace``): the saved file runs with ``torch.jit.load``
after ``import torchvision`` (its nms / roi_align ops), without detectron2's Python code.

The traced module takes one image tensor (3, H, W), float, in the model's input format
(BGR for the configs here), already resized as ``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``
say, and returns, in that resized image's coordinates:

    boxes (R, 4) XYXY, classes (R,) int64, scores (R,), class_scores (R, K)

(the order of detectron2's flattened ``Instances`` fields, sorted by name, is given in the
json written beside the model). ``KaryotypeTorchScript`` wraps the file and does the resize
and the box scaling back to the original image.
"""

import importlib
import json
import os
import sys
import types
from typing import Dict

import numpy as np
import torch

__all__ = ["export_torchscript", "KaryotypeTorchScript", "tracing_adapter_class"]


def tracing_adapter_class():
    """
    detectron2's ``TracingAdapter``. detectron2 0.6's ``detectron2/export/__init__.py``
    imports caffe2 (gone from torch); its ``flatten`` module does not need it, so when the
    package fails to import, ``flatten`` is loaded without running that ``__init__``.
    """
    try:
        from detectron2.export import TracingAdapter

        return TracingAdapter
    except ImportError:
        pass
    import detectron2

    sys.modules.pop("detectron2.export", None)
    package = types.ModuleType("detectron2.export")
    package.__path__ = [os.path.join(os.path.dirname(detectron2.__file__), "export")]
    sys.modules["detectron2.export"] = package
    return importlib.import_module("detectron2.export.flatten").TracingAdapter


def _inference(model, inputs):
    # no detector_postprocess: boxes stay in the traced input's coordinates
    return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]


def export_torchscript(model, sample_image: torch.Tensor, output_path: str, cfg=None) -> Dict:
    """
    Args:
        model (GeneralizedRCNN): in eval mode, on the CPU or GPU.
        sample_image (Tensor): (3, H, W) float, one input as the model sees it; the traced
            module runs on other sizes too.
        output_path (str): where to write the TorchScript file; ``<path>.json`` gets the
            output names and the resize settings.

    Returns:
        dict: what was written to the json.
    """
    TracingAdapter = tracing_adapter_class()
    adapter = TracingAdapter(model, [{"image": sample_image}], _inference)
    with torch.no_grad():
        traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
    # names of the flattened outputs, in order
    with torch.no_grad():
        instances = adapter.outputs_schema(traced(*adapter.flattened_inputs))[0]["instances"]
    names = sorted(instances.get_fields().keys())
    info = {"outputs": names, "format": "BGR", "min_size_test": None, "max_size_test": None}
    if cfg is not None:
        info.update(
            format=cfg.INPUT.FORMAT,
            min_size_test=cfg.INPUT.MIN_SIZE_TEST,
            max_size_test=cfg.INPUT.MAX_SIZE_TEST,
        )
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    traced.save(output_path)
    with open(output_path + ".json", "w") as f:
        json.dump(info, f, indent=1)
    return info


class KaryotypeTorchScript:
    """
    Run an exported model on an image: resize like detectron2's test-time
    ``ResizeShortestEdge``, run, scale the boxes back.

    Example::

        model = KaryotypeTorchScript("model.ts")
        out = model(cv2.imread("metaphase.jpg"))  # BGR uint8
        out["boxes"], out["classes"], out["scores"], out["class_scores"], out["top1"]
    """

    def __init__(self, path: str):
        import torchvision  # noqa: F401  (registers the ops the traced graph calls)

        self.module = torch.jit.load(path, map_location="cpu")
        with open(path + ".json") as f:
            self.info = json.load(f)

    def _resized_shape(self, h: int, w: int):
        short, longest = self.info["min_size_test"], self.info["max_size_test"]
        if not short:
            return h, w
        scale = short / min(h, w)
        if max(h, w) * scale > longest:
            scale = longest / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def __call__(self, image_bgr: np.ndarray) -> Dict[str, np.ndarray]:
        import cv2

        h, w = image_bgr.shape[:2]
        nh, nw = self._resized_shape(h, w)
        resized = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        if self.info["format"] == "RGB":
            resized = resized[:, :, ::-1]
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))).float()
        with torch.no_grad():
            outputs = dict(zip(self.info["outputs"], self.module(tensor)))
        boxes = outputs["pred_boxes"].numpy().copy()
        boxes[:, 0::2] *= w / nw
        boxes[:, 1::2] *= h / nh
        result = {
            "boxes": boxes,
            "classes": outputs["pred_classes"].numpy(),
            "scores": outputs["scores"].numpy(),
            "class_scores": outputs["class_scores"].numpy(),
        }
        for subset in ("top1", "all_classes"):  # which detections the metrics use
            if subset in outputs:
                result[subset] = outputs[subset].numpy().astype(bool)
        return result
