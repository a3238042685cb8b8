"""Karyotype metrics of DeepACC §3.1: mAP, mAPmax, Acc, AER (see karyotype_evaluation.py)."""

from .coco_check import coco_average_precision
from .karyotype_evaluation import KaryotypeEvaluator, evaluate_predictions
from .metrics import compute_karyotype_metrics

__all__ = [
    "KaryotypeEvaluator",
    "coco_average_precision",
    "compute_karyotype_metrics",
    "evaluate_predictions",
]
