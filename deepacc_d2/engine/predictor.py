"""
A trained model and the one way it sees an image file's pixels at test time, as detectron2's
``DefaultPredictor`` prepares them: channel order, the test-time resize
(:func:`..data.images.test_resize`), a float CHW tensor, the original size for the boxes.
"""

from typing import Dict

import numpy as np
import torch

from detectron2.modeling import build_model

from ..data.images import resize_for_test
from .checkpoint import TrainedWeightsCheckpointer

__all__ = ["load_model", "model_input"]


def load_model(cfg):
    """The model of ``cfg`` with ``MODEL.WEIGHTS`` loaded, in eval mode."""
    model = build_model(cfg)
    TrainedWeightsCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    return model.eval()


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
