"""Naming a cell's chromosomes together: hand-made class vectors with known best assignments."""

import numpy as np
import pytest

from deepacc_d2.app.karyotype.assignment import assign_classes
from deepacc_d2.classes import CLASS_NAMES, NUM_CLASSES

C = CLASS_NAMES.index


def vector(**named):
    """A class vector: the given probabilities (keys c1..c22, X, Y), the rest shared evenly."""
    p = np.zeros(NUM_CLASSES)
    for name, value in named.items():
        p[C(name.lstrip("c"))] = value
    rest = 1 - p.sum()
    p[p == 0] = rest / np.count_nonzero(p == 0)
    return p


def sure_cell(skip=(), sex="XY"):
    """Sure vectors (0.97) for two of each autosome and the sex chromosomes, less ``skip``."""
    names = [str(k) for k in range(1, 23) for _ in range(2)] + list(sex)
    for name in skip:
        names.remove(name)
    return names, [vector(**{f"c{n}": 0.97}) for n in names]


def named(classes):
    return [CLASS_NAMES[k] for k in classes]


def test_a_normal_cell_keeps_its_names():
    names, vectors = sure_cell(sex="XX")
    classes, margins = assign_classes(np.array(vectors), 2.0, 2.0)
    assert named(classes) == names
    assert (margins > 2.0).all()  # renaming any one costs -log(0.97 / 0.0013) and more


@pytest.mark.parametrize("third_21, kept", [(0.97, True), (0.5, False)])
def test_a_trisomy_survives_when_its_evidence_is_strong(third_21, kept):
    # 47 detections: three 21s, one 22 (a 22 is missing). Renaming the third 21 as 22 fills
    # the missing slot (saves missing_cost 2) and drops the extra copy (saves extra_cost 2),
    # and costs -log p22 + log p21 more: sure 21 (p21 0.97, p22 0.0013): 6.6 > 4, kept;
    # unsure (p21 0.5, p22 0.4): 0.22 < 4, renamed 22.
    names, vectors = sure_cell(skip=["22"])
    names.append("21")
    p22 = 0.0013 if third_21 == 0.97 else 0.4
    vectors.append(vector(c21=third_21, c22=p22))
    classes, margins = assign_classes(np.array(vectors), 2.0, 2.0)
    assert named(classes).count("21") == (3 if kept else 2)
    assert named(classes).count("22") == (1 if kept else 2)
    # the third 21's margin is what renaming it costs: 6.6 - 4 when sure
    if kept:
        assert margins[-1] == pytest.approx(np.log(third_21 / p22) - 4.0, abs=1e-6)


def test_two_look_alikes_are_resolved_by_their_scores():
    # a normal cell, but one 8 looks like a 7 (0.6) more than an 8 (0.35): named one by one
    # the cell has three 7s and one 8; together, the weakest 7-claimant is the 8
    names, vectors = sure_cell()
    i7, i8 = names.index("7"), names.index("8")
    vectors[i7 + 1] = vector(c7=0.9, c8=0.05)  # the second 7: sure enough
    vectors[i8 + 1] = vector(c7=0.6, c8=0.35)  # the second 8
    assert np.array(vectors).argmax(axis=1).tolist().count(C("7")) == 3
    classes, margins = assign_classes(np.array(vectors), 2.0, 2.0)
    assert named(classes) == names
    # its margin, the cheapest other assignment: swap the two look-alikes' names (it 7, the
    # second 7 an 8): log(0.35 / 0.6) + log(0.9 / 0.05) = 2.351, cheaper than naming it a
    # third 7 (extra 2 + missing 2 + log(0.35 / 0.6) = 3.461); the swap is the other's margin
    swap = np.log(0.35 / 0.6) + np.log(0.9 / 0.05)
    assert margins[i8 + 1] == pytest.approx(swap, abs=1e-6)
    assert margins[i7 + 1] == pytest.approx(swap, abs=1e-6)
    assert margins[i7] > swap  # the sure 7


def test_the_sex_chromosomes_take_x_then_x_or_y():
    for sex in ("XX", "XY", "XXY"):
        names, vectors = sure_cell(sex=sex)
        classes, _ = assign_classes(np.array(vectors), 2.0, 2.0)
        assert sorted(named(classes)[44:]) == sorted(sex)


def test_an_empty_cell():
    classes, margins = assign_classes(np.zeros((0, NUM_CLASSES)), 2.0, 2.0)
    assert classes.shape == (0,) and margins.shape == (0,)
