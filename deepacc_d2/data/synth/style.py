"""
Batch ("preparation") styles: everything that a real slide shares across all its cells.

Batch effects are why DeepACC exists (paper §2.3, Fig. 1): one lab's long, thin, finely
banded chromosomes against another's short, thick, blurred ones. Each synthetic image belongs
to one batch id; the style of batch ``b`` is a pure function of ``(seed, b)``, so all images
of a batch share it and a batch kept out of training (``held_out_batches``) has a style no
training image carries.
"""

from dataclasses import asdict, dataclass
from typing import Dict, Tuple

import numpy as np

#: Stream id mixed into the seed of batch styles, so they never reuse an image's generator.
_BATCH_STREAM = 0xBA7C4

#: Uniform range of each style parameter (see BatchStyle for the meaning).
STYLE_RANGES: Dict[str, Tuple[float, float]] = {
    "condensation": (0.6, 1.5),
    "width_jitter": (0.85, 1.15),
    "sister_separation": (0.55, 1.2),
    "band_blur_mb": (0.8, 2.6),
    "stain_od": (0.55, 1.05),
    "band_contrast": (0.55, 0.9),
    "background": (215.0, 250.0),
    "background_gradient": (0.0, 30.0),
    "background_blotch": (0.0, 6.0),
    "optical_blur": (0.5, 1.4),
    "noise_sigma": (0.5, 5.0),
    "jpeg_quality": (45.0, 95.0),
    "sharpening": (0.0, 1.2),
}


@dataclass(frozen=True)
class BatchStyle:
    """
    Attributes:
        condensation (float): length scale of every chromosome (1 = chr1 spans 17 % of the
            image's short side); width scales as condensation ** -0.3 (thicker when short).
        width_jitter (float): extra factor on chromatid width.
        sister_separation (float): distance between the two chromatid axes / chromatid width;
            < 1 fuses them, > 1 shows a groove.
        band_blur_mb (float): sigma of the banding blur in Mb at condensation 1 (band
            resolution); scaled by condensation ** -1, so short chromosomes show fewer bands.
        stain_od (float): optical density of a gpos100 band.
        band_contrast (float): share of a band's density that follows the stain; the rest is a
            uniform base, so gneg bands stay visible.
        background (float): mean gray level of the empty slide.
        background_gradient (float): gray-level drop across the image (direction per image).
        background_blotch (float): amplitude of low-frequency background unevenness.
        optical_blur (float): sigma in px (at a 1200 px short side) of the microscope's blur.
        noise_sigma (float): sigma of additive pixel noise, gray levels.
        jpeg_quality (int): quality of the JPEG round trip every image goes through.
        sharpening (float): unsharp-mask amount (bright halo around dark objects).
    """

    condensation: float
    width_jitter: float
    sister_separation: float
    band_blur_mb: float
    stain_od: float
    band_contrast: float
    background: float
    background_gradient: float
    background_blotch: float
    optical_blur: float
    noise_sigma: float
    jpeg_quality: int
    sharpening: float

    def to_dict(self) -> Dict[str, float]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def sample_batch_style(rng: np.random.Generator, ranges: Dict[str, Tuple[float, float]] = None):
    """
    Args:
        rng (Generator): the batch's generator.
        ranges (dict): per-parameter (low, high); default STYLE_RANGES.

    Returns:
        BatchStyle
    """
    ranges = STYLE_RANGES if ranges is None else ranges
    values = {name: float(rng.uniform(*ranges[name])) for name in STYLE_RANGES}
    values["jpeg_quality"] = int(round(values["jpeg_quality"]))
    # Rounded so the style stored in the json is exactly the style used to draw.
    values = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()}
    return BatchStyle(**values)


def batch_style(seed: int, batch_id: int, ranges=None) -> BatchStyle:
    """The style of batch ``batch_id`` of a dataset generated with ``seed``."""
    return sample_batch_style(np.random.default_rng([seed, _BATCH_STREAM, batch_id]), ranges)
