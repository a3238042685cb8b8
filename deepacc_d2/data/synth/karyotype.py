"""
Karyotypes of synthetic cells: which chromosomes a cell holds, and its ISCN string.
"""

from typing import Dict, List, Optional

import numpy as np

from ...classes import CLASS_NAMES
from ...iscn import karyotype_counts  # noqa: F401  (re-exported by synth)

#: Numerical abnormalities the generator can draw: a trisomy ("+21", added to 46,XX or 46,XY
#: at random) or a whole sex-chromosome karyotype ("45,X", "47,XXY", "47,XYY").
ABNORMALITIES = ("+21", "+18", "+13", "45,X", "47,XXY", "47,XYY")

#: Default per-cell probability of each abnormality; the rest are 46,XX or 46,XY (1:1).
DEFAULT_ABNORMALITY_RATES: Dict[str, float] = {
    "+21": 0.04,
    "+18": 0.02,
    "+13": 0.02,
    "45,X": 0.02,
    "47,XXY": 0.02,
    "47,XYY": 0.02,
}


def sample_karyotype(
    rng: np.random.Generator, abnormality_rates: Optional[Dict[str, float]] = None
) -> str:
    """
    Args:
        rng (Generator): the image's generator.
        abnormality_rates (dict[str, float]): per-cell probability of each entry of
            ABNORMALITIES; they must sum to at most 1. Default: DEFAULT_ABNORMALITY_RATES.

    Returns:
        str: an ISCN karyotype, e.g. "46,XY", "47,XX,+21", "45,X", "47,XXY".
    """
    rates = DEFAULT_ABNORMALITY_RATES if abnormality_rates is None else abnormality_rates
    unknown = set(rates) - set(ABNORMALITIES)
    if unknown:
        raise ValueError(f"unknown abnormalities {sorted(unknown)}; known: {ABNORMALITIES}")
    names = [a for a in ABNORMALITIES if rates.get(a, 0.0) > 0]
    probs = [rates[a] for a in names]
    if sum(probs) > 1 + 1e-9:
        raise ValueError(f"abnormality rates sum to {sum(probs)} > 1")
    # Draw the sex and the uniform first, always, so changing one rate keeps the other draws.
    sex = "XX" if rng.random() < 0.5 else "XY"
    u = rng.random()
    edges = np.cumsum(probs)
    hit = int(np.searchsorted(edges, u, side="right"))
    if hit == len(names):
        return f"46,{sex}"
    abnormality = names[hit]
    if abnormality.startswith("+"):
        return f"47,{sex},{abnormality}"
    return abnormality


def karyotype_chromosomes(iscn: str) -> List[str]:
    """The class names of every chromosome of the cell, in canonical order (with repeats)."""
    counts = karyotype_counts(iscn)
    return [name for name in CLASS_NAMES for _ in range(counts[name])]
