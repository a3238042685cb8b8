"""
Training augmentations for metaphases beyond detectron2's resize and flip: what suits
chromosomes, which lie in any orientation and whose stain varies between slides.
"""

from detectron2.data import transforms as T


def metaphase_augmentations(cfg, is_train: bool):
    """
    The augmentations that follow detectron2's (ResizeShortestEdge, INPUT.RANDOM_FLIP), in
    training only (an empty list at test time):

    * ``INPUT.ROTATE_90``: a rotation by 0, 90, 180 or 270 degrees, each equally likely (with a
      horizontal flip, all eight symmetries of the square). Boxes stay exact: a 90-degree
      rotation maps an axis-aligned box to an axis-aligned box.
    * ``INPUT.INTENSITY_JITTER`` j > 0: brightness and contrast each scaled by a factor drawn
      from [1 - j, 1 + j].
    """
    augs = []
    if not is_train:
        return augs
    if cfg.INPUT.ROTATE_90:
        augs.append(T.RandomRotation([0, 90, 180, 270], expand=True, sample_style="choice"))
    j = float(cfg.INPUT.INTENSITY_JITTER)
    if not 0 <= j < 1:
        raise ValueError(f"INPUT.INTENSITY_JITTER must be in [0, 1), got {j}")
    if j > 0:
        augs += [T.RandomBrightness(1 - j, 1 + j), T.RandomContrast(1 - j, 1 + j)]
    return augs
