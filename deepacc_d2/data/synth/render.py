"""
Rendering of one synthetic G-banded metaphase.

Everything is drawn in optical density (OD, absorbance): each chromosome, nucleus and speck
adds its OD to one canvas, and the image is ``background * 10 ** -OD`` (Beer-Lambert), so
where chromosomes cross the crossing is darker, as on a real slide. Each chromosome is drawn
in its own small canvas along a smoothly bent axis and then added at its place.

Shorthand: H x W image, n samples along a chromosome's axis (1 px apart), h x w its canvas.
"""

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from .cytobands import Ideogram, load_ideograms
from .karyotype import karyotype_chromosomes, sample_karyotype
from .style import BatchStyle

#: Length of chr1 at condensation 1, as a fraction of the image's short side (real CIL
#: metaphases: chr1 spans ~17-20 % of a ~700 px image).
CHR1_LENGTH_FRACTION = 0.17
#: Full width of a chromosome (both chromatids) at condensation 1, same unit.
WIDTH_FRACTION = 0.019
#: Subpixel bits for cv2 drawing.
_SHIFT = 3


@dataclass
class SynthConfig:
    """
    What a synthetic dataset holds beyond the batch styles. Every field is stored in the
    COCO json's "info" so a dataset can be regenerated.

    Attributes:
        image_size (tuple[int, int]): (H, W) of every image.
        num_batches (int): number of batches (preparations); image i belongs to one of them.
        abnormality_rates (dict[str, float] or None): per-cell rate of each numerical
            abnormality (see karyotype.ABNORMALITIES); None = karyotype defaults.
        overlap_rate (float): probability that a chromosome is placed with no attempt to
            avoid the ones already placed, so it may touch, cross or overlap them.
        nuclei_rate (float): probability that an image shows interphase nuclei (1 or 2).
        debris_rate (float): mean number of small non-chromosome specks per image / 10.
        length_noise (float): relative sigma of a chromosome's length around hg38's.
        bend (float): sigma in radians of the turning of a chr1-sized chromosome's axis.
        spread_fill (tuple[float, float]): range of the fraction of the spread's disk that
            chromosomes cover (density of the spread).
        visible_od (float): a pixel belongs to a chromosome where that chromosome adds at
            least this OD (~2 gray levels below background per 0.01): boxes and polygons use it.
    """

    image_size: Tuple[int, int] = (1200, 1600)
    num_batches: int = 20
    abnormality_rates: Optional[Dict[str, float]] = None
    overlap_rate: float = 0.15
    nuclei_rate: float = 0.5
    debris_rate: float = 1.0
    length_noise: float = 0.04
    bend: float = 0.45
    spread_fill: Tuple[float, float] = (0.12, 0.25)
    visible_od: float = 0.02


@dataclass
class ChromosomePatch:
    """
    One chromosome drawn in its own canvas.

    Attributes:
        od (ndarray): h x w float32 optical density.
        mask (ndarray): h x w bool, ``od >= visible_od``.
        axis (ndarray): n x 2 float (x, y) axis points in canvas coordinates.
        length_px (float): axis length.
        centromere_px (float): arc length from the p telomere to the drawn constriction.
    """

    od: np.ndarray
    mask: np.ndarray
    axis: np.ndarray
    length_px: float
    centromere_px: float


@dataclass
class SynthImage:
    """
    Attributes:
        image (ndarray): H x W uint8 grayscale image.
        karyotype (str): ISCN string of the cell.
        instances (list[dict]): per chromosome: "category" (class name), "bbox" (x0, y0, x1,
            y1) inclusive pixel limits of its visible pixels, "mask" (bool crop of that box),
            "length_px", "centromere_index" (as drawn).
    """

    image: np.ndarray
    karyotype: str
    instances: List[dict] = field(default_factory=list)


def chromosome_size_px(
    ideogram: Ideogram, style: BatchStyle, short_side: int, rng=None, length_noise: float = 0.0
) -> Tuple[float, float]:
    """
    Returns:
        (float, float): axis length and full width in px. Length is proportional to the
        chromosome's bp length (times 1 + N(0, length_noise)); width follows condensation ** -0.3.
    """
    chr1 = load_ideograms()["1"]
    length = CHR1_LENGTH_FRACTION * short_side * style.condensation * ideogram.length / chr1.length
    if rng is not None and length_noise > 0:
        length *= float(np.clip(1 + rng.normal(0, length_noise), 0.7, 1.3))
    width = WIDTH_FRACTION * short_side * style.width_jitter * style.condensation**-0.3
    return length, width


def _bent_axis(rng, s: np.ndarray, length_px: float, angle: float, bend: float):
    """Axis points (n x 2, starting at 0) at arc lengths ``s``, and their unit normals."""
    n = len(s)
    # Smooth turning: a few half-sine modes, zero turning at the p end.
    turn = np.zeros(n)
    for j in (1, 2, 3):
        amp, phase = rng.normal(0.0, bend / j), rng.uniform(0, 2 * np.pi)
        turn += amp * (np.sin(np.pi * j * s / length_px + phase) - np.sin(phase))
    theta = angle + turn
    mid = np.concatenate([theta[:1], 0.5 * (theta[1:] + theta[:-1])])
    step = length_px / (n - 1)
    axis = np.stack([np.cumsum(np.cos(mid) * step), np.cumsum(np.sin(mid) * step)], 1)
    axis -= axis[0]
    return axis, np.stack([-np.sin(theta), np.cos(theta)], 1)


def _axis_profiles(ideogram, s, width_px, style, centromere_px):
    """Per axis sample: a chromatid's thickness, its offset from the axis, and its OD."""
    tc = width_px / (1.0 + style.sister_separation)
    constriction = np.exp(-(((s - centromere_px) / (0.5 * tc)) ** 2))
    thickness = tc * (1.0 - 0.2 * constriction)
    offset = 0.5 * style.sister_separation * tc * (1.0 - 0.7 * constriction)
    stalk = ideogram.stain_profile(len(s)) == "stalk"
    thickness[stalk] *= 0.4
    offset[stalk] = 0.0
    # Band resolution: blur of the bp density profile; condensed chromosomes show fewer bands.
    px_per_mb = s[-1] / (ideogram.length / 1e6)
    band_sigma = style.band_blur_mb / style.condensation * px_per_mb
    density = gaussian_filter1d(ideogram.density_profile(len(s)), band_sigma, mode="nearest")
    od_axis = style.stain_od * ((1.0 - style.band_contrast) + style.band_contrast * density)
    return thickness, offset, od_axis


def _draw_chromatid(pts, thickness, od_axis, shape) -> np.ndarray:
    """OD of one chromatid along the polyline ``pts`` (canvas coordinates)."""
    # Each segment i writes its index i + 1, so every pixel knows its place on the axis.
    index = np.zeros(shape, np.float32)
    fixed = [tuple(p) for p in np.round(pts * (1 << _SHIFT)).astype(np.int64).tolist()]
    for i in range(len(pts) - 1):
        width = max(1, int(round(thickness[i])))
        cv2.line(index, fixed[i], fixed[i + 1], float(i + 1), width, cv2.LINE_8, _SHIFT)
    inside = index > 0
    seg = index.astype(np.int64)[inside] - 1
    # Cylinder cross-section: a chromatid is thickest on its axis.
    dist = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 3)[inside]
    radius = np.maximum(thickness[seg] / 2, 1.0)
    depth = np.sqrt(np.clip(1.0 - ((radius - dist) / radius) ** 2, 0.0, 1.0))
    chromatid = np.zeros(shape, np.float32)
    chromatid[inside] = od_axis[seg] * (0.55 + 0.45 * depth)
    return chromatid


def render_chromosome(
    ideogram: Ideogram,
    length_px: float,
    width_px: float,
    style: BatchStyle,
    rng: np.random.Generator,
    angle: float = 0.0,
    bend: float = 0.0,
    optical_blur_px: float = 1.0,
    visible_od: float = 0.02,
) -> ChromosomePatch:
    """
    Draw one chromosome: two sister chromatids with rounded ends along a bent axis, banded by
    its cytobands, constricted at the centromere (the acen boundary), with thin pale stalks
    and satellites where the ideogram has them (acrocentric p12 / p13).

    Args:
        ideogram (Ideogram): the class's bands.
        length_px, width_px (float): axis length and full width.
        style (BatchStyle): the batch's style.
        rng (Generator): draws the bending.
        angle (float): direction of the axis at its p end, radians (0 = +x).
        bend (float): sigma of the axis' turning in radians (0 = straight).
        optical_blur_px (float): sigma of the microscope blur.
        visible_od (float): OD threshold of the mask.

    Returns:
        ChromosomePatch
    """
    n = max(int(math.ceil(length_px)), 2) + 1
    s = np.linspace(0.0, length_px, n)
    axis, normal = _bent_axis(rng, s, length_px, angle, bend)
    centromere_px = ideogram.centromere_index * length_px
    thickness, offset, od_axis = _axis_profiles(ideogram, s, width_px, style, centromere_px)
    pad = float(thickness.max()) / 2 + 3 * optical_blur_px + 3
    sisters = [axis + k * offset[:, None] * normal for k in (-1.0, 1.0)]
    lo = np.floor(np.min([p.min(0) for p in sisters], 0) - pad)
    hi = np.ceil(np.max([p.max(0) for p in sisters], 0) + pad)
    shape = (int(hi[1] - lo[1]) + 1, int(hi[0] - lo[0]) + 1)
    raw = np.zeros(shape, np.float32)
    for pts in sisters:
        np.maximum(raw, _draw_chromatid(pts - lo, thickness, od_axis, shape), out=raw)
    od = cv2.GaussianBlur(raw, (0, 0), optical_blur_px) if optical_blur_px > 0 else raw
    return ChromosomePatch(
        od=od,
        mask=od >= visible_od,
        axis=axis - lo,
        length_px=float(length_px),
        centromere_px=float(centromere_px),
    )


def _background(rng, style: BatchStyle, size: Tuple[int, int]) -> np.ndarray:
    H, W = size
    direction = rng.uniform(0, 2 * np.pi)
    xs = np.linspace(-0.5, 0.5, W, dtype=np.float32)
    ys = np.linspace(-0.5, 0.5, H, dtype=np.float32)
    ramp = np.cos(direction) * xs[None, :] + np.sin(direction) * ys[:, None]
    blotch = rng.normal(0, 1, (6, 8)).astype(np.float32)
    blotch = cv2.resize(blotch, (W, H), interpolation=cv2.INTER_CUBIC)
    return style.background - style.background_gradient * ramp + style.background_blotch * blotch


def _add_patch(canvas: np.ndarray, patch: np.ndarray, x0: int, y0: int):
    """Add ``patch`` at (x0, y0), clipped to the canvas. Returns the clipped slices."""
    H, W = canvas.shape
    h, w = patch.shape
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if cx0 >= cx1 or cy0 >= cy1:
        return None
    src = patch[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    canvas[cy0:cy1, cx0:cx1] += src
    return (slice(cy0, cy1), slice(cx0, cx1)), (
        slice(cy0 - y0, cy1 - y0),
        slice(cx0 - x0, cx1 - x0),
    )


def _draw_nucleus(rng, od: np.ndarray, style: BatchStyle, center, short_side: int):
    radius = rng.uniform(0.09, 0.17) * short_side
    a, b = radius * rng.uniform(0.85, 1.15), radius * rng.uniform(0.85, 1.15)
    size = int(2 * max(a, b) + 12)
    patch = np.zeros((size, size), np.float32)
    c = (size // 2, size // 2)
    cv2.ellipse(patch, c, (int(a), int(b)), rng.uniform(0, 180), 0, 360, 1.0, -1)
    coarse = cv2.resize(
        rng.normal(0, 1, (5, 5)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC
    )
    grain = rng.normal(0, 1, (size, size)).astype(np.float32)
    level = style.stain_od * rng.uniform(0.5, 0.9)
    patch = cv2.GaussianBlur(patch, (0, 0), 2.0)  # soft rim first, grainy chromatin after
    patch *= level * (1.0 + 0.15 * coarse + 0.3 * cv2.GaussianBlur(grain, (0, 0), 1.0))
    _add_patch(od, patch, int(center[0]) - size // 2, int(center[1]) - size // 2)


def _draw_debris(rng, od: np.ndarray, count: int, short_side: int):
    H, W = od.shape
    for _ in range(count):
        r = rng.uniform(0.6, 3.5) * short_side / 1200
        size = int(2 * r + 8)
        patch = np.zeros((size, size), np.float32)
        cv2.circle(patch, (size // 2, size // 2), max(1, int(round(r))), rng.uniform(0.1, 0.7), -1)
        patch = cv2.GaussianBlur(patch, (0, 0), 0.8)
        _add_patch(
            od, patch, int(rng.uniform(0, W)) - size // 2, int(rng.uniform(0, H)) - size // 2
        )


def _render_chromosomes(rng, names, style: BatchStyle, config: SynthConfig, short: int):
    """(name, ChromosomePatch) of each chromosome of ``names``, in that order."""
    ideograms = load_ideograms()
    blur_px = style.optical_blur * short / 1200
    patches = []
    for name in names:
        length, width = chromosome_size_px(ideograms[name], style, short, rng, config.length_noise)
        bend = config.bend * math.sqrt(length / (CHR1_LENGTH_FRACTION * short))
        angle = rng.uniform(0, 2 * np.pi)
        patch = render_chromosome(
            ideograms[name], length, width, style, rng, angle, bend, blur_px, config.visible_od
        )
        patches.append((name, patch))
    return patches


def _spread(rng, patches, config: SynthConfig, short: int):
    """Radius and center (x, y) of a round spread the chromosomes fill a drawn fraction of."""
    H, W = config.image_size
    area = sum(float(p.mask.sum()) for _, p in patches)
    radius = min(math.sqrt(area / rng.uniform(*config.spread_fill) / math.pi), 0.47 * short)
    center = np.array([W / 2, H / 2]) + rng.uniform(-0.1, 0.1, 2) * np.array([W, H])
    return radius, center


def _find_place(rng, mask, occupied, radius, center, tries: int) -> Tuple[int, int]:
    """Top-left corner for ``mask``: the first of ``tries`` clear of ``occupied``, or the last."""
    H, W = occupied.shape
    h, w = mask.shape
    for _ in range(tries):
        r, phi = radius * math.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        x0 = int(np.clip(center[0] + r * math.cos(phi) - w / 2, 0, max(W - w, 0)))
        y0 = int(np.clip(center[1] + r * math.sin(phi) - h / 2, 0, max(H - h, 0)))
        region = occupied[y0 : y0 + h, x0 : x0 + w]
        if not (region & mask[: region.shape[0], : region.shape[1]]).any():
            break
    return x0, y0


def _place_chromosomes(rng, od, patches, radius, center, overlap_rate: float) -> List[dict]:
    """Add the patches to ``od`` in random order. Returns their instances, in that order."""
    occupied = np.zeros(od.shape, bool)
    instances = []
    for k in rng.permutation(len(patches)):
        name, patch = patches[k]
        avoid = rng.random() >= overlap_rate
        x0, y0 = _find_place(rng, patch.mask, occupied, radius, center, 20 if avoid else 1)
        placed = _add_patch(od, patch.od, x0, y0)
        if placed is None:
            continue
        dst, src = placed
        mask = patch.mask[src]
        occupied[dst] |= mask
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            continue
        bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max(), ys.max()
        oy, ox = dst[0].start, dst[1].start
        instances.append(
            {
                "category": name,
                "bbox": (int(bx0 + ox), int(by0 + oy), int(bx1 + ox), int(by1 + oy)),
                "mask": mask[by0 : by1 + 1, bx0 : bx1 + 1],
                "length_px": patch.length_px,
                "centromere_index": patch.centromere_px / patch.length_px,
            }
        )
    return instances


def _photograph(rng, od: np.ndarray, style: BatchStyle, short: int) -> np.ndarray:
    """The uint8 image of ``od`` on the batch's background, with noise, sharpening and JPEG."""
    image = _background(rng, style, od.shape) * np.exp(-math.log(10) * od)
    image += rng.standard_normal(od.shape, dtype=np.float32) * style.noise_sigma
    if style.sharpening > 0:
        # Unsharp masking (common in capture software) leaves the bright halo seen around
        # real chromosomes.
        image += style.sharpening * (image - cv2.GaussianBlur(image, (0, 0), 3.0 * short / 1200))
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(style.jpeg_quality)])
    return cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE)


def render_metaphase(
    rng: np.random.Generator, style: BatchStyle, config: SynthConfig, karyotype: str = None
) -> SynthImage:
    """
    Draw one cell: karyotype, chromosomes placed in a roughly round spread, nuclei and debris,
    background, noise and the batch's JPEG round trip.

    Args:
        rng (Generator): the image's generator (all randomness of the image comes from it).
        style (BatchStyle): the image's batch style.
        config (SynthConfig): dataset configuration.
        karyotype (str): ISCN to draw; default: sampled with config.abnormality_rates.

    Returns:
        SynthImage
    """
    H, W = config.image_size
    short = min(H, W)
    if karyotype is None:
        karyotype = sample_karyotype(rng, config.abnormality_rates)
    names = karyotype_chromosomes(karyotype)
    patches = _render_chromosomes(rng, names, style, config, short)
    radius, center = _spread(rng, patches, config, short)
    od = np.zeros((H, W), np.float32)
    instances = _place_chromosomes(rng, od, patches, radius, center, config.overlap_rate)
    if rng.random() < config.nuclei_rate:
        for _ in range(int(rng.integers(1, 3))):
            # Nuclei lie around the spread, often cut by the image border.
            phi = rng.uniform(0, 2 * np.pi)
            dist = radius + rng.uniform(0.0, 0.25) * short
            at = center + dist * np.array([math.cos(phi), math.sin(phi)])
            _draw_nucleus(rng, od, style, at, short)
    _draw_debris(rng, od, int(rng.poisson(10 * config.debris_rate)), short)
    image = _photograph(rng, od, style, short)
    # The list is in placement order; store it in canonical class order for readability.
    instances.sort(key=lambda d: (names.index(d["category"]), d["bbox"]))
    return SynthImage(image=image, karyotype=karyotype, instances=instances)
