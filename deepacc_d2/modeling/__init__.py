"""DeepACC's ROI heads (§2.1–2.4); importing this module registers ``DeepACCROIHeads``,
``MirrorViewRCNN``, ``KaryotypeRetinaNet`` and the narrow ResNet-FPN backbone for CPUs."""

from .backbone import build_narrow_resnet_fpn_backbone
from .box_head import SeparateBranchesHead, build_separate_branches_head
from .classification import aam_logits, aam_loss, group_inner_adjacency_loss, local_class_centers
from .fast_rcnn import DeepACCOutputLayers
from .mirror_view import MirrorViewRCNN
from .retinanet import KaryotypeRetinaNet
from .roi_heads import DeepACCROIHeads

__all__ = [
    "DeepACCOutputLayers",
    "DeepACCROIHeads",
    "KaryotypeRetinaNet",
    "MirrorViewRCNN",
    "SeparateBranchesHead",
    "aam_logits",
    "aam_loss",
    "build_narrow_resnet_fpn_backbone",
    "build_separate_branches_head",
    "group_inner_adjacency_loss",
    "local_class_centers",
]
