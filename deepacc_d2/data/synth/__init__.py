"""
Synthetic G-banded metaphases: the project's embedded default dataset (a pure generator;
``deepacc_d2.data.synthetic`` registers them as detectron2 datasets).

``render_metaphase`` draws one image; ``generate_image`` draws image i of a dataset from its
seed; ``write_dataset`` writes PNGs and COCO jsons.
"""

from .cytobands import Ideogram, load_ideograms
from .karyotype import karyotype_chromosomes, karyotype_counts, sample_karyotype
from .render import SynthConfig, SynthImage, render_chromosome, render_metaphase
from .style import BatchStyle, batch_style
from .writer import generate_image, write_dataset

__all__ = [
    "BatchStyle",
    "Ideogram",
    "SynthConfig",
    "SynthImage",
    "batch_style",
    "generate_image",
    "karyotype_chromosomes",
    "karyotype_counts",
    "load_ideograms",
    "render_chromosome",
    "render_metaphase",
    "sample_karyotype",
    "write_dataset",
]
