"""
DeepACC for detectron2: chromosome detection and 24-class classification on whole
G-banded metaphase images. ``import deepacc_d2`` registers the ROI heads, datasets and
evaluator; nothing else is needed before ``build_model(cfg)``.

Importing it first applies :mod:`.compat`: detectron2 has no wheel, and its v0.6 sources do not
import on today's Python, numpy, Pillow, setuptools and torch without those fixes. Each fix
checks whether it is needed and is a no-op on a stack (or a detectron2 build) that is fine.
"""

from . import compat

compat.apply()  # before anything imports detectron2's modules

from .classes import CLASS_NAMES, DENVER_GROUPS, NUM_CLASSES, denver_group_of  # noqa: E402
from .config import add_deepacc_config  # noqa: E402
from .data import builtin as _builtin  # noqa: E402
from .evaluation import KaryotypeEvaluator  # noqa: E402
from .modeling import DeepACCOutputLayers, DeepACCROIHeads  # noqa: E402

_builtin.register_all()  # the datasets under $DETECTRON2_DATASETS (nothing is read yet)

__all__ = [
    "CLASS_NAMES",
    "DENVER_GROUPS",
    "NUM_CLASSES",
    "DeepACCOutputLayers",
    "DeepACCROIHeads",
    "KaryotypeEvaluator",
    "add_deepacc_config",
    "denver_group_of",
]
__version__ = "0.1.0"
