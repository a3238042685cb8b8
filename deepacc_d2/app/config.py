"""
``add_application_config(cfg)``: the core's keys (:func:`deepacc_d2.config.add_deepacc_config`)
and those of the application's karyotype step: how a cell's chromosomes are counted and named
and when a cell goes to review (docs/karyotype.md). ``setup_cfg(...)``: the core's one config
builder with these keys, for every ``deepacc`` command, ``train_net.py`` and the studies (any
config of ``configs/`` loads through it).
"""

from .. import config
from ..config import add_deepacc_config

__all__ = ["add_application_config", "setup_cfg"]


def add_application_config(cfg):
    """Add the core's keys, then the ``TEST.KARYOTYPE`` keys of the karyotype step, to a fresh
    ``get_cfg()`` (in place)."""
    add_deepacc_config(cfg)
    _C = cfg

    # The karyotype step's own counting and naming; the metrics keep §3.1's.
    _C.TEST.KARYOTYPE.COUNT_BY = "score"  # count top-1 score >= p (score) or 1 - p_bg (foreground)
    _C.TEST.KARYOTYPE.COUNT_FG_THRESH = 0.5  # foreground counting: 1 - p_background >= this
    _C.TEST.KARYOTYPE.COUNT_NMS_THRESH = 0.7  # foreground counting: class-agnostic NMS IoU
    _C.TEST.KARYOTYPE.COUNT_JUDGE = ""  # candidate judge weights: count what it keeps; "": all
    _C.TEST.KARYOTYPE.COUNT_JUDGE_WEIGHT = 1.0  # lambda: judge's -log q against naming costs, > 0
    _C.TEST.KARYOTYPE.ASSIGN = False  # name a cell's chromosomes together (Hungarian); bool
    _C.TEST.KARYOTYPE.EXTRA_COPY_COST = 2.0  # assignment: cost of a copy beyond 46,XX/XY, >= 0
    _C.TEST.KARYOTYPE.MISSING_COPY_COST = 2.0  # assignment: cost of a missing normal copy, >= 0
    _C.TEST.KARYOTYPE.SEX_COPY_COST = -1.0  # assignment: missing / extra X or Y; < 0: as above
    _C.TEST.KARYOTYPE.REVIEW_NAME_MARGIN = 1.0  # an assignment's name this cheap to change; 0: off
    _C.TEST.KARYOTYPE.REVIEW_SEX_MARGIN = 0.0  # the same for X / Y names alone; 0: off
    _C.TEST.KARYOTYPE.REVIEW_LOW_SCORE = 0.8  # a counted call below this is low-confidence
    _C.TEST.KARYOTYPE.REVIEW_LOW_SCORE_SHARE = 0.1  # review above this share of low ones; 1: off
    _C.TEST.KARYOTYPE.REVIEW_OVERLAP_IOU = 0.3  # review two counted boxes at IoU >= this; > 1: off
    _C.TEST.KARYOTYPE.REVIEW_AMBIGUITY_MARGIN = 0.2  # top-2 of a group closer than this; 0: off


def setup_cfg(config_file: str, opts=(), weights: str = None, training: bool = False):
    """:func:`deepacc_d2.config.setup_cfg` with :func:`add_application_config`'s keys."""
    return config.setup_cfg(config_file, opts, weights, training, add_application_config)
