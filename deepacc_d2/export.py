"""
Export a trained model for deployment along detectron2's path (``TracingAdapter`` +
tracing), to TorchScript (``.ts``: runs with ``torch.jit.load`` after ``import torchvision``
for its nms / roi_align ops) or ONNX (``.onnx``: runs with ONNX Runtime alone), without
detectron2's Python code.

The exported graph takes one image tensor (3, H, W), float, in the model's input format
(BGR for the configs here), already resized as ``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``
say, and returns, in that resized image's coordinates:

    boxes (R, 4) XYXY, classes (R,) int64, scores (R,), class_scores (R, K)

(the order of detectron2's flattened ``Instances`` fields, sorted by name, is given in the
json written beside the model). ``ExportedModel`` runs either file and does the resize and
the box scaling back to the original image.
"""

import importlib
import json
import os
import sys
import types
import warnings
from typing import Dict

import cv2
import numpy as np
import torch

__all__ = ["ExportedModel", "export_model", "tracing_adapter_class"]

FORMATS = (".ts", ".onnx")  # by file extension


def tracing_adapter_class():
    """
    detectron2's ``TracingAdapter``. detectron2 0.6's ``detectron2/export/__init__.py``
    imports caffe2 (gone from torch); its ``flatten`` module does not need it, so when the
    package fails to import, ``flatten`` is loaded without running that ``__init__``.
    """
    try:
        from detectron2.export import TracingAdapter  # fails to import on v0.6 without caffe2

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


def export_model(model, sample_image: torch.Tensor, output_path: str, cfg=None) -> Dict:
    """
    Args:
        model (GeneralizedRCNN): in eval mode, on the CPU or GPU.
        sample_image (Tensor): (3, H, W) float, one input as the model sees it; the exported
            graph runs on other sizes too.
        output_path (str): ``*.ts`` (TorchScript) or ``*.onnx`` (ONNX); ``<path>.json`` gets
            the output names and the resize settings.

    Returns:
        dict: what was written to the json.
    """
    extension = os.path.splitext(output_path)[1]
    if extension not in FORMATS:
        raise ValueError(f"{output_path}: the export format is chosen by {' or '.join(FORMATS)}")
    # eval(): torch.onnx.export restores the adapter's mode on the whole tree afterwards
    adapter = tracing_adapter_class()(model, [{"image": sample_image}], _inference).eval()
    with torch.no_grad():  # runs once: names of the flattened outputs, in order
        flat = adapter(*adapter.flattened_inputs)  # sets outputs_schema
    instances = adapter.outputs_schema(flat)[0]["instances"]
    names = sorted(instances.get_fields().keys())
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # detectron2's graph converts shapes to Python numbers where tracing may not follow
        # them; the tests run the exported file on other sizes than traced
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        if extension == ".ts":
            traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
            traced.save(output_path)
        else:
            torch.onnx.export(
                adapter,
                adapter.flattened_inputs,
                output_path,
                input_names=["image"],
                output_names=names,
                dynamic_axes={"image": {1: "height", 2: "width"}}
                | {name: {0: "detections"} for name in names},
                opset_version=17,
                dynamo=False,
            )
    info = {"outputs": names, "format": "BGR", "min_size_test": None, "max_size_test": None}
    if cfg is not None:
        info.update(
            format=cfg.INPUT.FORMAT,
            min_size_test=cfg.INPUT.MIN_SIZE_TEST,
            max_size_test=cfg.INPUT.MAX_SIZE_TEST,
        )
    with open(output_path + ".json", "w") as f:
        json.dump(info, f, indent=1)
    return info


class ExportedModel:
    """
    Run an exported model (``.ts`` with torch, ``.onnx`` with ONNX Runtime) on an image:
    resize like detectron2's test-time ``ResizeShortestEdge``, run, scale the boxes back.

    Example::

        model = ExportedModel("model.ts")  # or "model.onnx"
        out = model(cv2.imread("metaphase.jpg"))  # BGR uint8
        out["boxes"], out["classes"], out["scores"], out["class_scores"], out["top1"]
    """

    def __init__(self, path: str):
        extension = os.path.splitext(path)[1]
        if extension not in FORMATS:
            raise ValueError(f"{path}: an exported model is a {' or '.join(FORMATS)} file")
        with open(path + ".json") as f:
            self.info = json.load(f)
        if extension == ".onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            self.run = lambda image: session.run(None, {"image": image.numpy()})
        else:
            import torchvision  # noqa: F401  (registers the ops the traced graph calls)

            module = torch.jit.load(path, map_location="cpu")
            self.run = lambda image: [t.numpy() for t in module(image)]

    def raw(self, image: torch.Tensor) -> Dict[str, np.ndarray]:
        """The graph's outputs by name, for a (3, H, W) float image already resized."""
        with torch.no_grad():
            return dict(zip(self.info["outputs"], self.run(image)))

    def _resized_shape(self, h: int, w: int):
        short, longest = self.info["min_size_test"], self.info["max_size_test"]
        if not short:
            return h, w
        scale = short / min(h, w)
        if max(h, w) * scale > longest:
            scale = longest / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def __call__(self, image_bgr: np.ndarray) -> Dict[str, np.ndarray]:

        h, w = image_bgr.shape[:2]
        nh, nw = self._resized_shape(h, w)
        resized = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        if self.info["format"] == "RGB":
            resized = resized[:, :, ::-1]
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))).float()
        outputs = self.raw(tensor)
        boxes = outputs["pred_boxes"].copy()
        boxes[:, 0::2] *= w / nw
        boxes[:, 1::2] *= h / nh
        result = {
            "boxes": boxes,
            "classes": outputs["pred_classes"],
            "scores": outputs["scores"],
            "class_scores": outputs["class_scores"],
        }
        for subset in ("top1", "all_classes"):  # which detections the metrics use
            if subset in outputs:
                result[subset] = outputs[subset].astype(bool)
        return result
