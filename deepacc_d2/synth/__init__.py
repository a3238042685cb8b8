"""
Synthetic G-banded metaphases: the project's embedded default dataset (issue 3).

``render_metaphase`` draws one image; ``generate_image`` draws image i of a dataset from its
seed; ``write_dataset`` writes PNGs and COCO jsons; ``register_synth_datasets`` and
``register_synth_onthefly`` make them detectron2 datasets.
"""
from .cytobands import Ideogram, load_ideograms
from .karyotype import karyotype_chromosomes, karyotype_counts, sample_karyotype
from .render import SynthConfig, SynthImage, render_chromosome, render_metaphase
from .style import BatchStyle, batch_style
from .writer import generate_image, write_dataset
