"""
The changes a person makes to a cell's chromosomes (:func:`apply_change`) and the change that
undoes each (:func:`inverse`), on the detections of a cell's record; :class:`.store.CaseReview`
applies them to the case's files.

A chromosome the model named keeps the model's answer (class, score, top 3) when a person
renames it: naming it back, or the "model" change, gives the model's call again, its score
and flags included.

Every change has an inverse change (the page's undo sends it): a rename is renamed back, a
swap swapped again, a moved box moved back, a split merged, a deleted chromosome restored where
it was (only one the log says was deleted from that cell).
"""

import math
from typing import Callable, Dict, List, Optional

from ...classes import CLASS_NAMES

# what a detection carries of the model's answer (:func:`..karyotype.cell.cell_record`)
MODEL_FIELDS = ("class", "score", "top3", "margin")


class ReviewError(Exception):
    """A request the case cannot take; ``status`` is its HTTP status (4xx)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def person_detection(box: List[float], name: str) -> Dict:
    """A chromosome as a person named it: certain of its class."""
    return {
        "bbox_xyxy": box,
        "class": name,
        "score": 1.0,
        "top3": [[name, 1.0]],
        "source": "person",
    }


def model_answer(detection: Dict) -> Optional[Dict]:
    """What the model said of a detection (its ``MODEL_FIELDS``), or None for a chromosome a
    person added."""
    if detection["source"] == "model":
        return {k: detection[k] for k in MODEL_FIELDS if k in detection}
    return detection.get("model")


def renamed(detection: Dict, name: str) -> Dict:
    """The detection as class ``name``: the model's own detection again when ``name`` is the
    model's class, else named by a person, the model's answer kept beside."""
    model = model_answer(detection)
    if model is not None and model["class"] == name:
        return {"bbox_xyxy": detection["bbox_xyxy"], **model, "source": "model"}
    named = person_detection(detection["bbox_xyxy"], name)
    if model is not None:
        named["model"] = model
    return named


# ---------------------------------------------------------------------------- the actions
# Each takes (change, detections, image, was_deleted), changes ``detections`` in place and
# returns what the log says of the change; the arguments are :func:`apply_change`'s.
def _rename(change: Dict, detections: List[Dict], image: Dict, was_deleted) -> Dict:
    i, name = _index(change, detections), _class_name(change)
    detail = {"index": i, "from": detections[i]["class"], "to": name}
    detections[i] = renamed(detections[i], name)
    return detail


def _back_to_model(change: Dict, detections: List[Dict], image: Dict, was_deleted) -> Dict:
    i = _index(change, detections)
    model = model_answer(detections[i])
    if model is None:
        raise ReviewError(400, f"chromosome {i}: added by a person, no model's answer")
    detail = {"index": i, "from": detections[i]["class"], "to": model["class"]}
    detections[i] = renamed(detections[i], model["class"])
    return detail


def _swap(change: Dict, detections: List[Dict], image: Dict, was_deleted) -> Dict:
    i, j = _two_indices(change, detections, "swap")
    a, b = detections[i]["class"], detections[j]["class"]
    detections[i], detections[j] = renamed(detections[i], b), renamed(detections[j], a)
    return {"index": i, "other": j, "from": a, "to": b}


def _delete(change: Dict, detections: List[Dict], image: Dict, was_deleted) -> Dict:
    i = _index(change, detections)
    return {"index": i, "deleted": detections.pop(i)}


def _restore(change: Dict, detections: List[Dict], image: Dict, was_deleted) -> Dict:
    i = change.get("index")
    if not is_int(i) or not 0 <= i <= len(detections):
        raise ReviewError(400, f"index {i!r}: where to put it back, 0..{len(detections)}")
    restored = change.get("detection")
    if not was_deleted(restored):
        raise ReviewError(400, "detection: not a chromosome deleted from this cell")
    detections.insert(i, restored)
    return {"index": i, "restored": restored}


def _add(change: Dict, detections: List[Dict], image: Dict, was_deleted) -> Dict:
    box, name = _box(change, image), _class_name(change)
    detections.append(person_detection(box, name))
    return {"index": len(detections) - 1, "bbox_xyxy": box, "class": name}


def _move_box(change: Dict, detections: List[Dict], image: Dict, was_deleted) -> Dict:
    return _reboxed(detections, _index(change, detections), _box(change, image))


def _split(change: Dict, detections: List[Dict], image: Dict, was_deleted) -> Dict:
    i, boxes = _index(change, detections), change.get("boxes")
    if not isinstance(boxes, list) or len(boxes) != 2:
        raise ReviewError(400, "boxes: the two parts' boxes")
    first, second = (_box({"bbox_xyxy": b}, image) for b in boxes)
    name = detections[i]["class"]
    detail = _reboxed(detections, i, first)
    detections.append(person_detection(second, name))
    detail.update(other=len(detections) - 1, bbox_xyxy=second, **{"class": name})
    return detail


def _merge(change: Dict, detections: List[Dict], image: Dict, was_deleted) -> Dict:
    i, j = _two_indices(change, detections, "merge")
    if "bbox_xyxy" in change:
        box = _box(change, image)
    else:
        (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = (detections[k]["bbox_xyxy"] for k in (i, j))
        box = [min(ax1, bx1), min(ay1, by1), max(ax2, bx2), max(ay2, by2)]
    detail = _reboxed(detections, i, box)
    detail.update(other=j, deleted=detections.pop(j))
    if j < i:
        detail["index"] = i - 1
    return detail


def _mark_reviewed(change: Dict, detections: List[Dict], image: Dict, was_deleted) -> Dict:
    if not isinstance(change.get("reviewed"), bool):
        raise ReviewError(400, "reviewed: true or false")
    return {}


_APPLY = {
    "class": _rename,
    "model": _back_to_model,
    "swap": _swap,
    "delete": _delete,
    "restore": _restore,
    "add": _add,
    "box": _move_box,
    "split": _split,
    "merge": _merge,
    "reviewed": _mark_reviewed,
}
ACTIONS = tuple(_APPLY)


def apply_change(
    change: Dict, detections: List[Dict], image: Dict, was_deleted: Callable[[Dict], bool]
) -> Dict:
    """
    Apply one change to a cell's chromosomes.

    Args:
        change (dict): its "action", one of ``ACTIONS``, and what the action takes
            (:meth:`.store.CaseReview.edit`).
        detections (list[dict]): the cell's record's detections, changed in place.
        image (dict): the record's "image" ("width", "height": the bounds of a box).
        was_deleted (callable): whether a detection is one deleted from this cell (the only
            detections "restore" takes).

    Returns:
        dict: what the log says of the change, the "detail" :func:`inverse` takes.

    Raises:
        ReviewError: 400 for a malformed change; ``detections`` may be half changed then.
    """
    return _APPLY[change["action"]](change, detections, image, was_deleted)


def inverse(action: str, detail: Dict, was_reviewed: bool) -> Optional[Dict]:
    """
    The change that undoes a change, from what the log says of it (``detail``): the cell's
    chromosomes as they were, in their order. The reviewed mark a change took off stays off
    (the undo is a change too); "reviewed" alone sets the mark back as it was.

    Returns:
        dict or None: the change without its "version"; None for a "merge" (the page undoes
        a split with one, and redoes the split itself).
    """
    i = detail.get("index")
    if action in ("class", "model"):
        return {"action": "class", "index": i, "class": detail["from"]}
    if action == "swap":
        return {"action": "swap", "index": i, "other": detail["other"]}
    if action == "delete":
        return {"action": "restore", "index": i, "detection": detail["deleted"]}
    if action in ("restore", "add"):
        return {"action": "delete", "index": i}
    if action == "box":
        return {"action": "box", "index": i, "bbox_xyxy": detail["from"]}
    if action == "split":
        return {
            "action": "merge",
            "index": i,
            "other": detail["other"],
            "bbox_xyxy": detail["from"],
        }
    if action == "reviewed":
        return {"action": "reviewed", "reviewed": was_reviewed}
    return None


# ---------------------------------------------------------------------------- the checks
def _reboxed(detections: List[Dict], i: int, box: List[float]) -> Dict:
    """Chromosome ``i`` moved to ``box``, its class kept."""
    detail = {"index": i, "from": detections[i]["bbox_xyxy"], "to": box}
    detections[i] = {**detections[i], "bbox_xyxy": box}
    return detail


def is_int(value) -> bool:
    """An integer of a JSON change (``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _index(change: Dict, detections: List[Dict], key: str = "index") -> int:
    i = change.get(key)
    if not is_int(i) or not 0 <= i < len(detections):
        raise ReviewError(400, f"{key} {i!r}: a chromosome of the cell, 0..{len(detections) - 1}")
    return i


def _two_indices(change: Dict, detections: List[Dict], action: str):
    i, j = _index(change, detections), _index(change, detections, "other")
    if i == j:
        raise ReviewError(400, f"{action}: index and other are both {i}")
    return i, j


def _class_name(change: Dict) -> str:
    name = change.get("class")
    if name not in CLASS_NAMES:
        raise ReviewError(400, f"class {name!r}: one of {', '.join(CLASS_NAMES)}")
    return name


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _box(change: Dict, image: Dict) -> List[float]:
    box = change.get("bbox_xyxy")
    if (
        not isinstance(box, list)
        or len(box) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
        or not all(_finite(v) for v in box)
    ):
        raise ReviewError(400, f"bbox_xyxy {box!r}: four numbers x1, y1, x2, y2 in pixels")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x2 - x1 >= 1 and y2 - y1 >= 1):
        raise ReviewError(400, f"bbox_xyxy {box}: x2 > x1 and y2 > y1 by a pixel at least")
    if x1 < 0 or y1 < 0 or x2 > image["width"] or y2 > image["height"]:
        raise ReviewError(
            400, f"bbox_xyxy {box}: outside the {image['width']}x{image['height']} image"
        )
    return [round(v, 2) for v in (x1, y1, x2, y2)]
