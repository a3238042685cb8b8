"""
Table 1's rows as the configs state them: ``configs/table1/<row>_*.yaml`` holds each row's
``MODEL.DEEPACC`` switches (on the paper's model), ``configs/cpu/<row>_*_cpu.yaml`` the same
row on the small CPU model where there is one. The studies (the ablation over seeds, the
learning curves) read the rows from here, and Table 1's metric columns.
"""

import functools
import glob
import os
from dataclasses import dataclass
from typing import Dict, List, Tuple

from ..app.config import setup_cfg
from ..app.model_zoo import ROOT

__all__ = ["METRICS", "METRICS_WITH_AP50", "SWITCHES", "Row", "resolved_switches", "table1_rows"]

# Table 1's columns (§3.1), as the evaluator names them
METRICS = ("mAP", "mAPmax", "Acc", "AER")
# the same with COCO's AP50 after the two mAPs (the CIL recipe's table)
METRICS_WITH_AP50 = METRICS[:2] + ("COCO_AP50",) + METRICS[2:]
# what a row of Table 1 switches: separate branches, L_AAM, siamese branch, L_GIA
SWITCHES = (
    "MODEL.DEEPACC.SEPARATE_BRANCHES",
    "MODEL.DEEPACC.AAM.ENABLED",
    "MODEL.DEEPACC.SIAMESE.ENABLED",
    "MODEL.DEEPACC.GIA.ENABLED",
)
NAMES = {
    "a": "(a) Faster R-CNN",
    "b": "(b) + sep",
    "c": "(c) sep + L_AAM",
    "d": "(d) sep + siamese",
    "e": "(e) sep + L_AAM + siamese",
    "f": "(f) DeepACC",
}


@dataclass(frozen=True)
class Row:
    """One row of Table 1.

    Attributes:
        letter (str): "a" ... "f".
        name (str): as the tables print it, e.g. "(f) DeepACC".
        config (str): its config file, ``configs/table1/<letter>_*.yaml``.
        cpu_config (str): the row on the small CPU model, ``configs/cpu/<letter>_*_cpu.yaml``;
            "" where there is none.
        switches (tuple[bool]): the values of :data:`SWITCHES` that ``config`` resolves to.
    """

    letter: str
    name: str
    config: str
    cpu_config: str
    switches: Tuple[bool, ...]

    def opts(self) -> List[str]:
        """The row's switches as KEY VALUE overrides, to make another config this row."""
        return [item for key, on in zip(SWITCHES, self.switches) for item in (key, str(on))]


def table1_rows() -> Dict[str, Row]:
    """Table 1's rows, letter -> :class:`Row`, in order, read from ``configs/table1/``."""
    return {row.letter: row for row in _read_rows()}


def resolved_switches(config_file: str) -> Tuple[bool, ...]:
    """The values of :data:`SWITCHES` that a config file resolves to (its ``_BASE_`` chain
    and the defaults included)."""
    cfg = setup_cfg(config_file, ["MODEL.DEVICE", "cpu"])  # the device changes no switch
    return tuple(bool(functools.reduce(getattr, key.split("."), cfg)) for key in SWITCHES)


@functools.lru_cache(maxsize=None)
def _read_rows() -> Tuple[Row, ...]:
    configs = os.path.join(ROOT, "configs")
    rows = []
    for config in sorted(glob.glob(os.path.join(configs, "table1", "?_*.yaml"))):
        letter = os.path.basename(config)[0]
        cpu = glob.glob(os.path.join(configs, "cpu", f"{letter}_*_cpu.yaml"))
        if len(cpu) > 1:
            raise ValueError(f"more than one CPU config of Table 1 ({letter}): {sorted(cpu)}")
        rows.append(
            Row(letter, NAMES[letter], config, cpu[0] if cpu else "", resolved_switches(config))
        )
    return tuple(rows)
