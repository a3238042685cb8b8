"""
Run a trained model: on a registered dataset (metrics + pictures) or on image files.
"""

import json
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from detectron2.data import DatasetCatalog, detection_utils
from detectron2.engine import DefaultPredictor
from detectron2.evaluation import inference_on_dataset
from detectron2.evaluation.evaluator import inference_context
from detectron2.modeling import build_model
from detectron2.utils import comm

from .checkpoint import TrainedWeightsCheckpointer
from .classes import CLASS_NAMES
from .cpu import cpu_bf16_inference
from .data.images import build_eval_loader, read_metaphase
from .evaluation import KaryotypeEvaluator
from .visualize import draw_comparison

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def load_model(cfg):
    model = build_model(cfg)
    TrainedWeightsCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    return model.eval()


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

    Writes into ``output_dir``: ``metrics.json`` (the returned results) and the evaluator's
    files (:class:`KaryotypeEvaluator`); with ``visualize``, ground truth beside predictions
    for the first images (:func:`draw_dataset_predictions`).

    Args:
        visualize (int): how many images to draw.
        score_thresh (float or None): the pictures' score threshold (:func:`picture_thresholds`);
            the metrics use the config's.

    Returns:
        OrderedDict: {"karyotype": {metric: value}} on the main process, {} on the others.
    """
    evaluator = KaryotypeEvaluator.from_config(cfg, dataset_name, output_dir)
    bf16 = cpu_bf16_inference(cfg, model)
    with bf16:
        results = inference_on_dataset(model, build_eval_loader(cfg, dataset_name), evaluator)
    if comm.is_main_process():
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "metrics.json"), "w") as f:
            json.dump(results, f, indent=1)
        if visualize:
            with inference_context(model), bf16:
                draw_dataset_predictions(
                    cfg, model, dataset_name, output_dir, visualize, score_thresh
                )
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


def output_stems(paths: Sequence[str]) -> Dict[str, str]:
    """A distinct output name per input file: its stem, or stem_ext when two inputs share
    a stem (cell.jpg, cell.png), then a counter when even that repeats (two folders)."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    taken, out = set(), {}
    for path, stem in zip(paths, stems):
        name = stem
        if stems.count(stem) > 1:
            name = f"{stem}_{os.path.splitext(path)[1].lstrip('.').lower()}"
        base, i = name, 2
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        taken.add(name)
        out[path] = name
    return out


def list_images(inputs: Sequence[str]) -> List[str]:
    """Files given directly, and the images inside folders given, in sorted order."""
    files = []
    for p in inputs:
        if os.path.isdir(p):
            files += sorted(
                os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_EXTENSIONS)
            )
        else:
            files.append(p)
    return files


def predict_each(cfg, inputs: Sequence[str], output_dir: str, errors: Dict[str, str]):
    """
    Run the model on every image of ``inputs`` (files or folders), one at a time, so that the
    caller can write each result as soon as it exists.

    Args:
        errors (dict): file -> message; an image that cannot be read (:func:`read_metaphase`)
            or predicted is recorded there (and logged) and the others still go through.

    Yields:
        (path, name, image, instances): the file, its unique output name (:func:`output_stems`),
        the (H, W, 3) uint8 BGR image and the model's ``Instances`` on the CPU; image and
        instances are None for a file that failed.
    """
    unloaded = cfg.clone()
    unloaded.defrost()
    unloaded.MODEL.WEIGHTS = ""  # loaded below, checked against the model
    predictor = DefaultPredictor(unloaded)
    TrainedWeightsCheckpointer(predictor.model).load(cfg.MODEL.WEIGHTS)
    bf16 = cpu_bf16_inference(cfg, predictor.model)
    os.makedirs(output_dir, exist_ok=True)
    paths = list_images(inputs)
    names = output_stems(paths)
    for path in paths:
        try:
            image = read_metaphase(path)
            with bf16:
                instances = predictor(image)["instances"].to("cpu")
        except Exception as e:  # name it, go on with the batch
            errors[path] = str(e) if str(e).startswith(path) else f"{path}: {type(e).__name__}: {e}"
            logger.error(errors[path])
            yield path, names[path], None, None
            continue
        yield path, names[path], image, instances


def predict_files(
    cfg, inputs: Sequence[str], output_dir: str, score_thresh: Optional[float] = None
):
    """
    Predict every image (:func:`predict_each`), write ``<name>.png`` (picture) per image and
    ``predictions.json``, the latter rewritten after each image (an interrupted run keeps what
    was done).

    Args:
        score_thresh (float or None): the pictures' score threshold (:func:`picture_thresholds`);
            ``predictions.json`` holds every detection.

    Returns:
        tuple[dict, dict]: (file -> records, file -> error message)
    """
    score_thresh, nms_thresh = picture_thresholds(cfg, score_thresh)
    results, errors = {}, {}
    for path, name, image, instances in predict_each(cfg, inputs, output_dir, errors):
        if instances is not None:
            results[path] = instances_to_records(instances)
            picture = draw_comparison(
                image[:, :, ::-1], instances, score_thresh=score_thresh, nms_thresh=nms_thresh
            )
            detection_utils.Image.fromarray(picture).save(os.path.join(output_dir, name + ".png"))
        with open(os.path.join(output_dir, "predictions.json"), "w") as f:
            json.dump({"predictions": results, "errors": errors}, f, indent=1)
    return results, errors


def draw_dataset_predictions(
    cfg,
    model,
    dataset_name: str,
    output_dir: str,
    num_images: int,
    score_thresh: Optional[float] = None,
) -> List[str]:
    """
    Ground truth beside predictions for the first ``num_images`` images of a dataset, written
    as ``<image>_pred.png``.

    Args:
        score_thresh (float or None): the pictures' score threshold (:func:`picture_thresholds`).

    Returns:
        list[str]: the pictures' paths.
    """
    from detectron2.data import DatasetMapper

    score_thresh, nms_thresh = picture_thresholds(cfg, score_thresh)
    mapper = DatasetMapper(cfg, is_train=False)
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for d in DatasetCatalog.get(dataset_name)[:num_images]:
        inputs = mapper(dict(d))
        with torch.no_grad():
            instances = model([inputs])[0]["instances"].to("cpu")
        image = detection_utils.read_image(d["file_name"], format="RGB")
        picture = draw_comparison(
            np.asarray(image), instances, d, score_thresh=score_thresh, nms_thresh=nms_thresh
        )
        path = os.path.join(
            output_dir, f"{os.path.splitext(os.path.basename(d['file_name']))[0]}_pred.png"
        )
        detection_utils.Image.fromarray(picture).save(path)
        paths.append(path)
    return paths
