"""
``deepacc predict``: the detections of a model on image files, as records and pictures.
"""

import json
import os
import time
from typing import Dict, List, Optional, Sequence

from ..classes import CLASS_NAMES
from ..engine.evaluate import picture_thresholds, save_png
from ..engine.files import write_atomic
from ..visualize import draw_comparison
from .case import check_pictures, list_images, run_case, timed
from .export import load_detector

PICTURES = ("none", "overlay")  # a picture per image, or none
SAVE_EVERY_S = 10.0  # predictions.json is rewritten at most this often during a case


def instances_to_records(instances) -> List[Dict]:
    """Detections as JSON-able records (class names, XYXY boxes, scores)."""
    boxes = instances.pred_boxes.tensor.tolist()
    return [
        {
            "class": CLASS_NAMES[int(c)],
            "bbox_xyxy": [round(v, 2) for v in b],
            "score": round(float(s), 4),
        }
        for b, s, c in zip(boxes, instances.scores.tolist(), instances.pred_classes.tolist())
    ]


def predict_files(
    cfg,
    inputs: Sequence[str],
    output_dir: str,
    score_thresh: Optional[float] = None,
    pictures: str = "overlay",
    workers: Optional[int] = None,
    timings: Optional[Dict[str, float]] = None,
):
    """
    Predict every image (:func:`.case.run_case`), write ``<name>.png`` (picture) per image
    and ``predictions.json``, the latter rewritten at most every ``SAVE_EVERY_S`` seconds and
    at the end (an interrupted run keeps what was done by then; rewriting a case's whole file
    after each image would cost more than the model on a large case).

    Args:
        score_thresh (float or None): the pictures' score threshold (:func:`picture_thresholds`);
            ``predictions.json`` holds every detection.
        pictures (str): "overlay": a picture per image; "none".
        workers (int or None): processes (:func:`.case.case_workers`).
        timings (dict or None): adds up the seconds of each stage (:func:`.case.timed`).

    Returns:
        tuple[dict, dict]: (file -> records, file -> error message)
    """
    check_pictures(pictures, PICTURES)
    score_thresh, nms_thresh = picture_thresholds(cfg, score_thresh)
    with timed(timings, "start-up"):
        model = load_detector(cfg)
    os.makedirs(output_dir, exist_ok=True)
    results, errors = {}, {}
    saved = time.monotonic()

    def save():
        nonlocal saved
        with timed(timings, "write"):
            text = json.dumps({"predictions": results, "errors": errors}, indent=1)
            write_atomic(os.path.join(output_dir, "predictions.json"), text)
        saved = time.monotonic()

    def work(path, name, image, instances, seconds):
        with timed(seconds, "selection"):
            records = instances_to_records(instances)
        if pictures != "none":
            with timed(seconds, "pictures"):
                picture = draw_comparison(
                    image[:, :, ::-1], instances, score_thresh=score_thresh, nms_thresh=nms_thresh
                )
            with timed(seconds, "write"):
                save_png(picture, os.path.join(output_dir, name + ".png"))
        return records

    def keep(path, records, error):
        if error is None:
            results[path] = records
        else:
            errors[path] = error
        if time.monotonic() - saved >= SAVE_EVERY_S:
            save()

    try:
        run_case(cfg, model, list_images(inputs), work, keep, "predict", workers, timings)
    finally:
        save()
    return results, errors
