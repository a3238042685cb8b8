"""
The one canonical class list of the project and its Denver groups.

Class index k (0-based) is used everywhere: detectron2's ``thing_classes``, COCO
``category_id - 1``, the columns of every score vector. Index K = 24 is background
inside the ROI heads, as in detectron2.
"""

from typing import Dict, List

import numpy as np

#: Canonical order: autosomes 1..22, then X, then Y.
CLASS_NAMES: List[str] = [str(i) for i in range(1, 23)] + ["X", "Y"]
NUM_CLASSES: int = len(CLASS_NAMES)

#: Denver groups (paper §2.4): size and centromere position.
DENVER_GROUPS: Dict[str, List[str]] = {
    "A": ["1", "2", "3"],
    "B": ["4", "5"],
    "C": ["6", "7", "8", "9", "10", "11", "12", "X"],
    "D": ["13", "14", "15"],
    "E": ["16", "17", "18"],
    "F": ["19", "20"],
    "G": ["21", "22", "Y"],
}

_GROUP_OF_NAME = {name: g for g, names in DENVER_GROUPS.items() for name in names}


def class_index(name: str) -> int:
    """
    Args:
        name (str): a canonical class name ("1".."22", "X", "Y"), or a CIL-style
            name with its group letter in front ("A1", "C10", "G22"); "X"/"Y" stay as is.

    Returns:
        int: the canonical 0-based index.
    """
    name = str(name).strip()
    if name in _GROUP_OF_NAME:
        return CLASS_NAMES.index(name)
    if len(name) > 1 and name[0] in DENVER_GROUPS and name[1:] in _GROUP_OF_NAME:
        if _GROUP_OF_NAME[name[1:]] == name[0]:
            return CLASS_NAMES.index(name[1:])
    raise ValueError(f"unknown chromosome class name {name!r}; expected one of {CLASS_NAMES}")


def denver_group_of(k: int) -> str:
    """Denver group letter (A..G) of class index ``k``."""
    return _GROUP_OF_NAME[CLASS_NAMES[k]]


def coco_categories() -> List[Dict]:
    """The 24 classes as a COCO json's categories: ids 1..24, names "1".."22", "X", "Y", the
    Denver group as supercategory (what the COCO loader maps back by name)."""
    return [
        {"id": k + 1, "name": name, "supercategory": denver_group_of(k)}
        for k, name in enumerate(CLASS_NAMES)
    ]


def group_adjacency_matrix() -> np.ndarray:
    """
    Returns:
        ndarray: (K, K) bool; entry (i, j) is True when i != j lie in one Denver group,
        i.e. (i, j) is in the paper's forbidden set F of Eq. 3.
    """
    groups = np.array([denver_group_of(k) for k in range(NUM_CLASSES)])
    same = groups[:, None] == groups[None, :]
    return same & ~np.eye(NUM_CLASSES, dtype=bool)
