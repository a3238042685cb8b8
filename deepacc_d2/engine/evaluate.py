"""
Evaluate a trained model on a registered dataset: the karyotype metrics and, from the same
forward pass, pictures of ground truth beside predictions.
"""

import json
import logging
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator, DatasetEvaluators, inference_on_dataset
from detectron2.utils import comm

from ..data.images import read_metaphase
from ..data.mapper import build_eval_loader
from ..evaluation import KaryotypeEvaluator
from ..visualize import draw_comparison
from .files import png_bytes, write_atomic
from .precision import cpu_bf16_inference

logger = logging.getLogger(__name__)


def evaluate(
    cfg,
    model,
    dataset_name: str,
    output_dir: str,
    visualize: int = 0,
    score_thresh: Optional[float] = None,
):
    """
    The karyotype metrics of a model on a registered dataset: what ``deepacc eval``,
    ``train_net.py --eval-only`` and the evaluation during training all run.

    Writes into ``output_dir``: ``evaluation.json`` (the returned results) and the evaluator's
    files (:class:`KaryotypeEvaluator`); with ``visualize``, ground truth beside predictions
    for the first images, from the same forward pass (:func:`draw_dataset_predictions`).

    Args:
        visualize (int): how many images to draw.
        score_thresh (float or None): the pictures' score threshold (:func:`picture_thresholds`);
            the metrics use the config's.

    Returns:
        OrderedDict: {"karyotype": {metric: value}} on the main process, {} on the others.
    """
    evaluator = KaryotypeEvaluator.from_config(cfg, dataset_name, output_dir)
    kept = KeepFirstOutputs(visualize)
    with cpu_bf16_inference(cfg, model):
        results = inference_on_dataset(
            model, build_eval_loader(cfg, dataset_name), DatasetEvaluators([evaluator, kept])
        )
    if comm.is_main_process():
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "evaluation.json"), "w") as f:
            json.dump(results, f, indent=1)
        if visualize:
            draw_dataset_predictions(cfg, kept.outputs, dataset_name, output_dir, score_thresh)
    return results


def picture_thresholds(cfg, score_thresh: Optional[float] = None) -> Tuple[float, float]:
    """
    The score and NMS thresholds of the pictures: the config's (``TEST.KARYOTYPE``), as for
    Acc/AER, the score one replaced by ``score_thresh`` when given (``--score-thresh``).

    Returns:
        tuple[float, float]: (score_thresh, nms_thresh).
    """
    k = cfg.TEST.KARYOTYPE
    return (k.SCORE_THRESH if score_thresh is None else score_thresh), k.NMS_THRESH


def save_png(picture: np.ndarray, path: str):
    """An RGB picture as a PNG file (:func:`.files.png_bytes`), written in one step."""
    write_atomic(path, png_bytes(picture))


def draw_dataset_predictions(
    cfg, outputs: Dict[str, object], dataset_name: str, output_dir: str, score_thresh=None
) -> List[str]:
    """
    Ground truth beside predictions, written as ``<image>_pred.png``, from the model's
    outputs kept during the evaluation (:class:`KeepFirstOutputs`): no second forward pass.

    Args:
        outputs (dict): file name -> the model's ``Instances`` on the CPU (original image size).
        score_thresh (float or None): the pictures' score threshold (:func:`picture_thresholds`).

    Returns:
        list[str]: the pictures' paths.
    """
    score_thresh, nms_thresh = picture_thresholds(cfg, score_thresh)
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for d in DatasetCatalog.get(dataset_name):
        if d["file_name"] not in outputs:
            continue
        image = read_metaphase(d["file_name"])[:, :, ::-1]
        picture = draw_comparison(
            np.ascontiguousarray(image),
            outputs[d["file_name"]],
            d,
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
        )
        path = os.path.join(
            output_dir, f"{os.path.splitext(os.path.basename(d['file_name']))[0]}_pred.png"
        )
        save_png(picture, path)
        paths.append(path)
    return paths


class KeepFirstOutputs(DatasetEvaluator):
    """Keeps the model's outputs for the first ``count`` images of an evaluation (by file
    name), for the pictures; adds no metric."""

    def __init__(self, count: int):
        self.count, self.outputs = count, {}

    def reset(self):
        self.outputs = {}

    def process(self, inputs, outputs):
        for i, o in zip(inputs, outputs):
            if len(self.outputs) < self.count and "file_name" in i:  # a file to draw on
                self.outputs[i["file_name"]] = o["instances"].to("cpu")

    def evaluate(self):
        return None
