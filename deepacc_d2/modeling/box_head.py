"""
The "sep" box head of Table 1 (b), §2.1: a classification branch and a regression branch that
share no parameter, on the same pooled RoI features.
"""

from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import build_box_head

__all__ = ["SeparateBranchesHead", "build_separate_branches_head"]


class SeparateBranchesHead(nn.Module):
    """
    Two box heads side by side. ``forward`` returns both feature sets as a tuple
    ``(cls_features, reg_features)``, which :class:`DeepACCOutputLayers` takes apart; one
    box head stands in for both in detectron2's ``StandardROIHeads._forward_box``.
    """

    def __init__(self, cls_branch: nn.Module, reg_branch: nn.Module):
        """
        Args:
            cls_branch (nn.Module): classification branch; its output feeds the margin and
                inference streams (§2.2, §2.3), or detectron2's linear classifier.
            reg_branch (nn.Module): regression branch, trained by Smooth-L1 only.
                Both must have the same ``output_shape``.
        """
        super().__init__()
        assert cls_branch.output_shape == reg_branch.output_shape, (
            cls_branch.output_shape,
            reg_branch.output_shape,
        )
        self.cls_branch = cls_branch
        self.reg_branch = reg_branch

    def forward(self, x):
        """
        Args:
            x (Tensor): (R, C, H, W) pooled RoI features.

        Returns:
            tuple[Tensor, Tensor]: (R, D) classification and (R, D) regression features.
        """
        return self.cls_branch(x), self.reg_branch(x)

    @property
    def output_shape(self) -> ShapeSpec:
        return self.reg_branch.output_shape


def build_separate_branches_head(cfg, input_shape: ShapeSpec) -> SeparateBranchesHead:
    """
    Both branches are heads of the kind ``MODEL.ROI_BOX_HEAD`` describes (the paper: two
    1024-wide FC layers each).
    """
    return SeparateBranchesHead(
        cls_branch=build_box_head(cfg, input_shape), reg_branch=build_box_head(cfg, input_shape)
    )
