"""
A trained model and the one way it sees an image file's pixels at test time, as detectron2's
``DefaultPredictor`` prepares them: channel order, the test-time resize
(:func:`..data.images.test_resize`), a float CHW tensor, the original size for the boxes.
"""

from typing import Dict

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from detectron2.layers import Conv2d, FrozenBatchNorm2d
from detectron2.modeling import build_model

from ..data.images import resize_for_test
from .checkpoint import TrainedWeightsCheckpointer

__all__ = ["fold_batchnorm", "for_cpu_inference", "load_model", "model_input"]


def load_model(cfg):
    """The model of ``cfg`` with ``MODEL.WEIGHTS`` loaded, in eval mode, for inference only
    (on a CPU: :func:`for_cpu_inference`)."""
    model = build_model(cfg)
    TrainedWeightsCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    return for_cpu_inference(model) if model.device.type == "cpu" else model


def for_cpu_inference(model: nn.Module) -> nn.Module:
    """An eval-mode model made faster on a CPU, in place, for inference only: its BatchNorm
    layers folded into their convolutions (:func:`fold_batchnorm`) and its backbone's weights
    channels-last, where its convolutions and GroupNorm run faster (the same outputs up to
    float rounding; docs/studies/counting.md, "Speed")."""
    fold_batchnorm(model)
    model.backbone.to(memory_format=torch.channels_last)
    return model


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """
    Fold each BatchNorm that follows a detectron2 ``Conv2d`` (its ``norm``: running statistics
    or frozen ones) into the convolution's weight and bias, in place: one layer less per
    convolution, the same function of the input up to float rounding. Only for inference: the
    folded model has no BatchNorm left to train. GroupNorm is left as it is.
    """
    for module in model.modules():
        norm = getattr(module, "norm", None)
        if not isinstance(module, Conv2d) or not isinstance(
            norm, (nn.BatchNorm2d, FrozenBatchNorm2d)
        ):
            continue
        if isinstance(norm, nn.BatchNorm2d) and norm.training:
            raise ValueError("fold_batchnorm: BatchNorm in training mode; call .eval() first")
        module.weight, module.bias = fuse_conv_bn_weights(
            module.weight,
            module.bias,
            norm.running_mean,
            norm.running_var,
            norm.eps,
            norm.weight,
            norm.bias,
        )
        module.norm = None
    return model


def model_input(image: np.ndarray, cfg_input) -> Dict:
    """
    Args:
        image (ndarray): (H, W, 3) uint8 BGR.
        cfg_input (CfgNode): ``cfg.INPUT`` (FORMAT, MIN_SIZE_TEST, MAX_SIZE_TEST).

    Returns:
        dict: the model's input: "image" (3, H', W') float in ``FORMAT``, "height", "width".
    """
    height, width = image.shape[:2]
    pixels = image[:, :, ::-1] if cfg_input.FORMAT == "RGB" else image
    pixels = resize_for_test(pixels, cfg_input.MIN_SIZE_TEST, cfg_input.MAX_SIZE_TEST)
    tensor = torch.as_tensor(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float()
    return {"image": tensor, "height": height, "width": width}
