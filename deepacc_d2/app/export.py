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
json written beside the model). ``ExportedModel`` runs either file with the eager model's
resize and box scaling back to the original image; ``deepacc predict`` / ``karyotype`` take
such a file for ``--weights`` (:func:`load_detector`).
"""

import importlib
import json
import os
import sys
import types
import warnings
from typing import Dict

import numpy as np
import torch

from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from ..engine.predictor import load_model, model_input

__all__ = [
    "ExportedDetector",
    "ExportedModel",
    "export_model",
    "load_detector",
    "tracing_adapter_class",
]

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
    resized as the eager model's input is (:func:`..engine.predictor.model_input`), run, the
    boxes scaled back to the image.

    Example::

        model = ExportedModel("model.ts")  # or "model.onnx"
        out = model(cv2.imread("metaphase.jpg"))  # BGR uint8
        out["boxes"], out["classes"], out["scores"], out["class_scores"], out["top1"]
    """

    def __init__(self, path: str):
        extension = os.path.splitext(path)[1]
        if extension not in FORMATS:
            raise ValueError(f"{path}: an exported model is a {' or '.join(FORMATS)} file")
        try:
            with open(path + ".json") as f:
                self.info = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}.json: the exported model's settings: {e}") from e
        # the resize the model was exported with (none when exported without a config)
        self.input = types.SimpleNamespace(
            FORMAT=self.info["format"],
            MIN_SIZE_TEST=self.info["min_size_test"] or 0,
            MAX_SIZE_TEST=self.info["max_size_test"] or sys.maxsize,
        )
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

    def instances(self, model_input: Dict) -> Instances:
        """The eager model's output for one input dict (:func:`..engine.predictor.model_input`):
        its ``Instances`` in the original image, as detectron2's ``detector_postprocess``
        gives them."""
        image = model_input["image"]
        raw = self.raw(image)
        found = Instances(tuple(image.shape[1:]))
        for name, value in raw.items():
            value = torch.as_tensor(value)
            found.set(name, Boxes(value) if name == "pred_boxes" else value)
        for subset in ("top1", "all_classes"):  # which detections the metrics use
            if found.has(subset):
                found.set(subset, found.get(subset).to(torch.bool))
        return detector_postprocess(found, model_input["height"], model_input["width"])

    def __call__(self, image_bgr: np.ndarray) -> Dict[str, np.ndarray]:
        found = self.instances(model_input(image_bgr, self.input))
        result = {
            "boxes": found.pred_boxes.tensor.numpy(),
            "classes": found.pred_classes.numpy(),
            "scores": found.scores.numpy(),
            "class_scores": found.class_scores.numpy(),
        }
        for subset in ("top1", "all_classes"):
            if found.has(subset):
                result[subset] = found.get(subset).numpy()
        return result


class ExportedDetector:
    """An exported model where the eager one is called: a list of input dicts in, a list of
    ``{"instances": Instances}`` out (what ``deepacc predict`` / ``karyotype`` run)."""

    def __init__(self, path: str):
        self.exported = ExportedModel(path)

    def __call__(self, batched_inputs):
        return [{"instances": self.exported.instances(x)} for x in batched_inputs]


def load_detector(cfg):
    """The model of ``cfg``: ``MODEL.WEIGHTS`` an exported ``.ts`` / ``.onnx`` file
    (:class:`ExportedDetector`) or a checkpoint (:func:`..engine.predictor.load_model`)."""
    if cfg.MODEL.WEIGHTS.endswith(FORMATS):
        return ExportedDetector(cfg.MODEL.WEIGHTS)
    return load_model(cfg)
