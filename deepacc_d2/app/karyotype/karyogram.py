"""
The karyogram picture of one cell: each counted chromosome cut from the metaphase, masked,
turned upright along its long axis, p arm up where the centromere's constriction shows, at
one common scale, in its class's slot (homologs side by side), in the layout labs use:

    1 2 3 4 5 / 6 7 8 9 10 11 12 X / 13 14 15 16 17 18 / 19 20 21 22 Y

Empty slots (but Y's) and overfull autosome slots are marked red, an autosome with one member
orange, and a low-confidence call gets an orange frame.
"""

from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from ...classes import CLASS_NAMES, denver_group_of
from ...visualize import GROUP_COLORS

ROWS: List[List[str]] = [
    ["1", "2", "3", "4", "5"],
    ["6", "7", "8", "9", "10", "11", "12", "X"],
    ["13", "14", "15", "16", "17", "18"],
    ["19", "20", "21", "22", "Y"],
]
RED, ORANGE, GRAY = (220, 20, 20), (245, 130, 0), (150, 150, 150)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of 8-bit values (the one that maximises the between-class variance)."""
    hist = np.bincount(np.clip(values.astype(np.int64).ravel(), 0, 255), minlength=256)
    hist = hist.astype(np.float64)
    weight0 = np.cumsum(hist)
    weight1 = weight0[-1] - weight0
    sum0 = np.cumsum(hist * np.arange(256))
    mean0 = sum0 / np.maximum(weight0, 1)
    mean1 = (sum0[-1] - sum0) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    return float(np.argmax(between))


def chromosome_mask(crop: np.ndarray) -> np.ndarray:
    """Dark object on a light background inside a box: Otsu, then the largest component (a
    neighbour reaching into the box is left out)."""
    mask = crop <= otsu_threshold(crop)
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    return mask


def upright(gray: np.ndarray, box) -> Tuple[np.ndarray, np.ndarray]:
    """
    Cut a chromosome from a gray image, mask it and turn its long axis vertical.

    Returns:
        (ndarray, ndarray): the uint8 picture (white outside the mask) and its bool mask,
        cropped to the mask.
    """
    h, w = gray.shape
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(max(x1, x0 + 1), w), min(max(y1, y0 + 1), h)
    crop = gray[y0:y1, x0:x1]
    mask = chromosome_mask(crop)
    ys, xs = np.nonzero(mask)
    if len(ys) >= 2:
        cov = np.cov(np.stack([xs, ys]).astype(np.float64))
        evals, evecs = np.linalg.eigh(cov)
        major = evecs[:, np.argmax(evals)]  # (dx, dy)
        angle = np.degrees(np.arctan2(major[1], major[0]))  # of the long axis, from +x
        turn = 90.0 - angle  # make it vertical
        picture = np.where(mask, crop, 255).astype(np.uint8)
        picture = ndimage.rotate(picture, -turn, reshape=True, order=1, cval=255)
        mask = ndimage.rotate(mask.astype(np.uint8), -turn, reshape=True, order=0) > 0
    else:
        picture = np.where(mask, crop, 255).astype(np.uint8)
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return np.full((1, 1), 255, np.uint8), np.zeros((1, 1), bool)
    picture = np.where(mask, picture, 255)[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return picture.astype(np.uint8), mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def p_arm_up(picture: np.ndarray, mask: np.ndarray, min_dip: float = 0.85):
    """
    Flip an upright chromosome so that its shorter arm (p) is on top, when the centromere
    shows as a constriction: the narrowest row of the middle 70 % of its length, at most
    ``min_dip`` of the median width.

    Returns:
        (ndarray, ndarray, bool or None): picture, mask, and whether it was oriented (None:
        no constriction found, left as is).
    """
    width = mask.sum(axis=1).astype(np.float64)
    n = len(width)
    if n < 8:
        return picture, mask, None
    lo, hi = int(0.15 * n), int(np.ceil(0.85 * n))
    inner = width[lo:hi]
    centromere = lo + int(np.argmin(inner))
    if width[centromere] > min_dip * np.median(width[width > 0]):
        return picture, mask, None
    if centromere > n / 2:  # the short arm is below: turn it over
        return picture[::-1], mask[::-1], True
    return picture, mask, True


def slot_counts(classes: np.ndarray) -> Dict[str, int]:
    return {name: int((np.asarray(classes) == k).sum()) for k, name in enumerate(CLASS_NAMES)}


def draw_karyogram(
    image: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    low_score: float,
    height: int = 110,
) -> Tuple[np.ndarray, Dict[str, Tuple[int, int, int, int]], List[Tuple[int, int, int, int]]]:
    """
    Args:
        image (ndarray): (H, W) or (H, W, 3) uint8 metaphase.
        boxes (ndarray): (N, 4) XYXY of the counted chromosomes; classes (N,), scores (N,).
        low_score (float): calls below this get an orange frame
            (``TEST.KARYOTYPE.REVIEW_LOW_SCORE``).
        height (int): pixels of the longest chromosome: the one common scale.

    Returns:
        ndarray: (H', W', 3) uint8 RGB karyogram.
        dict: class name -> (x0, y0, x1, y1) of its slot in that picture.
        list: per chromosome, in the order of ``boxes``, the (x0, y0, x1, y1) it is drawn at
            in that picture (what the review page's karyogram answers clicks and drops with).
    """
    gray = image if image.ndim == 2 else image[..., :3].mean(axis=2)
    gray = np.asarray(gray, dtype=np.uint8)
    cut = [p_arm_up(*upright(gray, b))[:2] for b in boxes]
    longest = max([p.shape[0] for p, _ in cut] + [1])
    scale = height / longest
    pictures = []
    for picture, _ in cut:
        size = (max(1, round(picture.shape[1] * scale)), max(1, round(picture.shape[0] * scale)))
        pictures.append(np.asarray(Image.fromarray(picture).resize(size, Image.BILINEAR)))
    counts = slot_counts(classes)
    width_of = max([p.shape[1] for p in pictures] + [height // 5])
    pad, label_h, gap = 6, 16, 14
    slot_w = {n: max(2, counts[n]) * (width_of + pad) + pad for n in CLASS_NAMES}
    row_w = [sum(slot_w[n] for n in row) + gap * (len(row) - 1) for row in ROWS]
    canvas_w = max(row_w) + 2 * gap
    row_h = height + label_h + 2 * pad
    canvas = Image.new("RGB", (canvas_w, len(ROWS) * (row_h + gap) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    slots, places = {}, [None] * len(boxes)
    for r, row in enumerate(ROWS):
        x = gap + (canvas_w - 2 * gap - row_w[r]) // 2
        y = gap + r * (row_h + gap)
        for name in row:
            slots[name] = (x, y, x + slot_w[name], y + row_h)
            k = CLASS_NAMES.index(name)
            members = np.nonzero(np.asarray(classes) == k)[0]
            members = members[np.argsort(-np.asarray(scores)[members], kind="stable")]
            cx = x + pad
            for d in members:
                p = pictures[d]
                top = y + pad + (height - p.shape[0])  # chromosomes stand on one baseline
                canvas.paste(Image.fromarray(p).convert("RGB"), (cx, top))
                places[d] = (cx, top, cx + p.shape[1], y + pad + height)
                if scores[d] < low_score:
                    draw.rectangle(
                        [cx - 2, top - 2, cx + p.shape[1] + 1, y + pad + height + 1],
                        outline=ORANGE,
                        width=2,
                    )
                cx += width_of + pad
            n = len(members)
            autosome = k < 22
            color = GROUP_COLORS[denver_group_of(k)]
            if (n == 0 and name != "Y") or (autosome and n >= 3):  # no Y: a female cell
                color = RED
                draw.rectangle(slots[name], outline=RED, width=2)
            elif autosome and n == 1:
                color = ORANGE
            base = y + pad + height + 2
            draw.line([x + pad, base, x + slot_w[name] - pad, base], fill=GRAY, width=1)
            text = name if n == 2 or (not autosome and n == 1) else f"{name} ({n})"
            draw.text((x + slot_w[name] // 2 - 4 * len(text) // 2 - 2, base + 2), text, fill=color)
            x += slot_w[name] + gap
    return np.asarray(canvas), slots, places
