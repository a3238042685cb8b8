"""
The second look's classifier (:mod:`.second_look`): a chromosome's crop cut from the input
image at the image's own resolution (:func:`crop_boxes`), named by a small ResNet
(:class:`CropClassifier`) trained by its own command and loaded from its own weights file.

Shape shorthand: N images, R boxes, K foreground classes, S crop side.
"""

import torch
from torch import nn
from torchvision.ops import roi_align

from ..classes import NUM_CLASSES
from .backbone import basic_resnet

__all__ = ["CropClassifier", "crop_boxes", "load_classifier", "read_classifier_state"]

WHITE = 255.0  # what a crop holds outside its box and outside the image: the slide


def crop_boxes(images, image_sizes, boxes, batch_index, size: int, margin: float):
    """
    Cut each box out of its gray image: the box grown by ``margin`` x its longest side on every
    side, its longest side scaled to ``size`` (aspect kept), centred in a ``size`` x ``size``
    square; whatever of that square lies outside the grown box or outside the image is white.
    Bilinear RoIAlign (pixel i spans [i, i + 1), detectron2's box convention) with adaptive
    sampling, so large boxes are averaged, not aliased.

    Args:
        images (Tensor): (N, 1, H, W) gray values 0-255, possibly padded beyond image_sizes.
        image_sizes (Tensor): (N, 2) the (height, width) of each image's content.
        boxes (Tensor): (R, 4) XYXY in image pixels.
        batch_index (Tensor): (R,) which image each box is on.

    Returns:
        Tensor: (R, 1, size, size) float crops, gray 0-255.
    """
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    longest = torch.maximum(x1 - x0, y1 - y0).clamp(min=1.0)
    pad = margin * longest
    x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    side = longest + 2 * pad
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = cx - side / 2, cy - side / 2
    rois = torch.stack([batch_index.to(boxes.dtype), left, top, left + side, top + side], dim=1)
    crops = roi_align(images, rois, (size, size), 1.0, 0, True)  # R x 1 x S x S
    # centres of the output cells, in image pixels
    steps = (torch.arange(size, device=boxes.device, dtype=boxes.dtype) + 0.5) / size
    gx = left[:, None] + steps[None, :] * side[:, None]  # R x S
    gy = top[:, None] + steps[None, :] * side[:, None]  # R x S
    height, width = image_sizes[batch_index].to(boxes.dtype).unbind(dim=1)
    inside_x = (gx >= torch.clamp(x0, min=0)[:, None]) & (gx <= torch.minimum(x1, width)[:, None])
    inside_y = (gy >= torch.clamp(y0, min=0)[:, None]) & (gy <= torch.minimum(y1, height)[:, None])
    inside = inside_y[:, :, None] & inside_x[:, None, :]  # R x S x S
    return torch.where(inside[:, None], crops, torch.full_like(crops, WHITE))


class CropClassifier(nn.Module):
    """
    A small basic-block ResNet (:func:`basic_resnet`, BatchNorm) that names a chromosome crop:
    (R, 1, S, S) gray values 0-255 in, (R, K) logits out; with ``not_chromosome``, (R, K + 1),
    the last "not one chromosome" (a fragment, two chromosomes in one box, debris).
    """

    def __init__(
        self,
        width: int = 32,
        depth: int = 18,
        num_classes: int = NUM_CLASSES,
        not_chromosome: bool = False,
    ):
        super().__init__()
        # out_features None: every stage, then the pooled linear layer ("linear")
        outputs = num_classes + int(not_chromosome)
        self.net = basic_resnet(1, width, width, depth, "BN", None, num_classes=outputs)

    def forward(self, crops):
        return self.net(crops / (WHITE / 2) - 1)["linear"]


def read_classifier_state(path: str):
    """A crop classifier's weights file (``{"model": state_dict}``) as a float32 state dict,
    refused with the file's name when it cannot be read."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    except Exception as e:
        raise ValueError(f"{path}: cannot read crop classifier weights ({e})") from e
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_classifier(classifier: CropClassifier, path: str, state=None):
    """Load a crop classifier's weights file (or ``state``, :func:`read_classifier_state` of
    it), refusing one that does not fit, with the file's name."""
    if state is None:
        state = read_classifier_state(path)
    try:
        classifier.load_state_dict(state)
    except RuntimeError as e:  # missing, left over or differently shaped parameters
        detail = [line.strip() for line in str(e).splitlines() if line.strip()][-1]
        raise ValueError(
            f"{path}: these crop classifier weights do not fit MODEL.SECOND_LOOK's WIDTH / "
            f"DEPTH / NOT_CHROMOSOME ({detail})"
        ) from None
