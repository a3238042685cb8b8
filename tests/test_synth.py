"""
Synthetic metaphases: properties that must hold, checked on small images.
"""

import filecmp
import json
import os
from dataclasses import replace

import numpy as np
import pytest

from deepacc_d2.classes import CLASS_NAMES
from deepacc_d2.data.synth.cytobands import load_ideograms
from deepacc_d2.data.synth.karyotype import karyotype_counts, sample_karyotype
from deepacc_d2.data.synth.render import (
    SynthConfig,
    chromosome_size_px,
    render_chromosome,
    render_metaphase,
)
from deepacc_d2.data.synth.style import batch_style
from deepacc_d2.data.synth.writer import write_dataset

SMALL = SynthConfig(image_size=(300, 400), num_batches=4)
HELD_OUT = [3]


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """8 images of 300 x 400, batch 3 held out, many abnormal cells."""
    out = str(tmp_path_factory.mktemp("synth") / "synth_small")
    rates = {"+21": 0.2, "+18": 0.1, "45,X": 0.1, "47,XXY": 0.1, "47,XYY": 0.1, "+13": 0.1}
    config = replace(SMALL, abnormality_rates=rates)
    files = write_dataset(out, 8, seed=7, config=config, held_out_batches=HELD_OUT)
    return out, config, {split: json.load(open(path)) for split, path in files.items()}


def _clean_style(batch_id=0, **overrides):
    """A batch style without noise, halo, background unevenness or JPEG loss."""
    return replace(
        batch_style(0, batch_id),
        noise_sigma=0.0,
        sharpening=0.0,
        jpeg_quality=100,
        background_gradient=0.0,
        background_blotch=0.0,
        **overrides,
    )


def test_ideograms_hg38_and_chm13():
    ideo = load_ideograms()
    assert list(ideo) == CLASS_NAMES
    # hg38 chr1 = 248,956,422 bp; CHM13 X = 154,259,566 bp; hg38 chr1 acen ends at 123.4 Mb.
    assert ideo["1"].length == 248_956_422
    assert ideo["X"].length == 154_259_566
    assert ideo["1"].centromere == 123_400_000


def test_karyotype_counts_checked():
    assert karyotype_counts("47,XY,+21")["21"] == 3
    assert karyotype_counts("45,X")["X"] == 1 and karyotype_counts("45,X")["Y"] == 0
    assert karyotype_counts("47,XXY")["X"] == 2
    with pytest.raises(ValueError):
        karyotype_counts("46,XY,+21")  # iscn_authenticator accepts it; the total is wrong
    rng = np.random.default_rng(0)
    assert {sample_karyotype(rng, {}) for _ in range(50)} == {"46,XX", "46,XY"}


def test_boxes_are_tight_on_visible_pixels():
    config = replace(SynthConfig(image_size=(400, 500)), nuclei_rate=0.0, debris_rate=0.0)
    style = _clean_style()
    out = render_metaphase(np.random.default_rng(3), style, config)
    H, W = out.image.shape
    union = np.zeros((H, W), bool)
    for inst in out.instances:
        x0, y0, x1, y1 = inst["bbox"]
        mask = inst["mask"]
        assert mask.shape == (y1 - y0 + 1, x1 - x0 + 1)
        # Tight: the mask reaches all four sides of its box.
        assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()
        union[y0 : y1 + 1, x0 : x1 + 1] |= mask
    # In the image, a chromosome pixel is at least OD 0.02 (~10 gray levels at 230) below the
    # flat background: everything 15 levels darker is inside some box (within 1 px) ...
    background = style.background
    dark = out.image < background * 10 ** (-1.5 * config.visible_od)
    grown = np.zeros_like(union)
    ys, xs = np.nonzero(union)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            grown[np.clip(ys + dy, 0, H - 1), np.clip(xs + dx, 0, W - 1)] = True
    assert dark.sum() > 1000
    assert not (dark & ~grown).any()
    # ... and no mask pixel is background-bright (5 levels of JPEG/rounding slack).
    assert (out.image[union] < background * 10 ** (-0.5 * config.visible_od)).all()


def _straight(name, style, short_side=1200, length_noise=0.0, rng=None):
    ideo = load_ideograms()[name]
    length, width = chromosome_size_px(ideo, style, short_side, rng, length_noise)
    patch = render_chromosome(
        ideo,
        length,
        width,
        style,
        np.random.default_rng(0),
        angle=0.0,
        bend=0.0,
        optical_blur_px=1.0,
    )
    cols = np.nonzero(patch.mask.any(0))[0]
    return patch, length, cols[0], cols[-1]


def test_relative_lengths_match_hg38():
    style = _clean_style(condensation=1.0)
    ext = {name: _straight(name, style)[2:] for name in ("1", "21", "X")}
    _, length1, a, b = _straight("1", style)
    cap = (b - a + 1) - length1  # rounded ends + blur, the same for every chromosome
    measured = {name: (hi - lo + 1) - cap for name, (lo, hi) in ext.items()}
    # hg38 chr21 / chr1 = 46.71 / 248.96 = 0.1876; CHM13 X / hg38 chr1 = 0.6196.
    assert measured["21"] / measured["1"] == pytest.approx(0.1876, abs=0.01)
    assert measured["X"] / measured["1"] == pytest.approx(0.6196, abs=0.01)
    # With the configured noise (sigma 4 %), the mean over 200 draws keeps the ratio.
    rng = np.random.default_rng(1)
    ideo = load_ideograms()
    ratios = [
        chromosome_size_px(ideo["21"], style, 1200, rng, 0.04)[0]
        / chromosome_size_px(ideo["1"], style, 1200, rng, 0.04)[0]
        for _ in range(200)
    ]
    assert np.mean(ratios) == pytest.approx(0.1876, rel=0.02)
    assert 0.03 < np.std(ratios) / 0.1876 < 0.08  # two 4 % noises: sqrt(2) * 4 % = 5.7 %


@pytest.mark.parametrize("name", ["1", "4", "9", "16", "18", "20", "X", "13", "21"])
def test_constriction_at_acen(name):
    style = _clean_style(condensation=1.2, sister_separation=0.8)
    patch, length, lo, hi = _straight(name, style)
    width = patch.mask.sum(0).astype(float)
    axis_start = patch.axis[0, 0]  # x of the p telomere on the axis
    ideo = load_ideograms()[name]
    # Search the axis away from the rounded ends and, on acrocentrics, past the pale stalk.
    stalks = [i for i, stain in enumerate(ideo.stains) if stain == "stalk"]
    first = ideo.ends[stalks[-1]] if stalks else 0
    s_lo = first / ideo.length * length + (3 if stalks else 8)
    x = np.arange(int(axis_start + s_lo), int(axis_start + length - 8))
    constriction_s = x[np.argmin(width[x])] - axis_start
    assert constriction_s / length == pytest.approx(ideo.centromere_index, abs=3 / length)


def test_karyotype_equals_boxes_per_class(small_dataset):
    _, _, splits = small_dataset
    karyotypes = set()
    for coco in splits.values():
        for image in coco["images"]:
            counts = dict.fromkeys(CLASS_NAMES, 0)
            for ann in coco["annotations"]:
                if ann["image_id"] == image["id"]:
                    counts[CLASS_NAMES[ann["category_id"] - 1]] += 1
            assert counts == karyotype_counts(image["karyotype"])
            karyotypes.add(image["karyotype"])
    assert any(not k.startswith("46") for k in karyotypes)


def test_json_boxes_and_polygons(small_dataset):
    _, _, splits = small_dataset
    coco = splits["train"]
    assert [c["name"] for c in coco["categories"]] == CLASS_NAMES
    assert [c["id"] for c in coco["categories"]] == list(range(1, 25))
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        pts = np.concatenate([np.reshape(p, (-1, 2)) for p in ann["segmentation"]])
        # Polygons run through boundary pixel centres: inside the box, touching each side.
        assert pts[:, 0].min() == x + 0.5 and pts[:, 0].max() == x + w - 0.5
        assert pts[:, 1].min() == y + 0.5 and pts[:, 1].max() == y + h - 0.5
        assert 0 < ann["area"] <= w * h


def test_held_out_batches_only_in_test(small_dataset):
    _, config, splits = small_dataset
    assert set(splits) == {"train", "val", "test"}
    test_styles = [img["batch_style"] for img in splits["test"]["images"]]
    assert {img["batch_id"] for img in splits["test"]["images"]} == set(HELD_OUT)
    for split in ("train", "val"):
        for img in splits[split]["images"]:
            assert img["batch_id"] not in HELD_OUT
            assert img["batch_style"] not in test_styles
            assert img["batch_style"] == batch_style(7, img["batch_id"]).to_dict()
    # Images of one batch share its style.
    assert all(s == test_styles[0] for s in test_styles)


@pytest.mark.slow
def test_same_seed_same_bytes_serial_and_parallel(small_dataset, tmp_path):
    out, config, _ = small_dataset
    again = str(tmp_path / "again")
    write_dataset(again, 8, seed=7, config=config, held_out_batches=HELD_OUT, num_workers=2)
    names = []
    for dirpath, _, files in os.walk(out):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), out)
            names.append(rel)
            assert filecmp.cmp(os.path.join(out, rel), os.path.join(again, rel), shallow=False), rel
    assert len(names) == 8 + 3
    other = str(tmp_path / "other")
    write_dataset(other, 1, seed=8, config=config)
    assert not filecmp.cmp(
        os.path.join(out, "images/train/000000.png"),
        os.path.join(other, "images/train/000000.png"),
        shallow=False,
    )
