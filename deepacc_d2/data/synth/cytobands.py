"""
Ideograms of the 24 chromosome classes from the cytoband tables shipped in ``pyryotype``.

Autosomes 1..22 come from hg38 (``cytobands_hg38.bed``), as the issue asks; that table has no
X or Y, so X and Y come from T2T-CHM13v2 (``cytobands_chm13.bed``). The two assemblies agree
on X's length within 1 % (156.0 vs 154.3 Mb); CHM13's Y (62.5 Mb) includes the whole
heterochromatic Yq12, which hg38 leaves partly unassembled (57.2 Mb), and that block is what
a G-banded Y shows as its dark distal q arm. The files are read in place through
``importlib.resources``; nothing is copied into this repository.
"""

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Dict, List, Tuple

import numpy as np

from ...classes import CLASS_NAMES

#: G-band stain of each cytoband class -> relative optical density in [0, 1].
#: gvar (1q12, 9q12, 16q11.2, Yq12 heterochromatin) stains dark; stalks (acrocentric p12) pale.
STAIN_DENSITY: Dict[str, float] = {
    "gneg": 0.08,
    "gpos25": 0.35,
    "gpos50": 0.58,
    "gpos75": 0.8,
    "gpos100": 1.0,
    "acen": 0.45,
    "gvar": 0.85,
    "stalk": 0.15,
}

#: Which assembly each class is read from (see the module docstring).
ASSEMBLY_OF_CLASS: Dict[str, str] = {name: "hg38" for name in CLASS_NAMES[:22]}
ASSEMBLY_OF_CLASS.update({"X": "chm13", "Y": "chm13"})


@dataclass(frozen=True)
class Ideogram:
    """
    One chromosome's band table, in base pairs from the p-arm telomere.

    Attributes:
        name (str): canonical class name ("1".."22", "X", "Y").
        starts, ends (ndarray): (B,) int64 band limits.
        stains (tuple[str]): (B,) stain class of each band.
        length (int): chromosome length in bp (end of the last band).
        centromere (float): bp position of the centromere, the p11.1 / q11 boundary,
            i.e. the middle of the acen bands.
    """

    name: str
    starts: np.ndarray
    ends: np.ndarray
    stains: Tuple[str, ...]
    length: int
    centromere: float

    @property
    def centromere_index(self) -> float:
        """p-arm length / total length."""
        return self.centromere / self.length

    def _band_at_samples(self, num_samples: int) -> np.ndarray:
        """(num_samples,) index of the band under each of ``num_samples`` equally spaced
        sample centres, p telomere first."""
        pos = (np.arange(num_samples) + 0.5) * (self.length / num_samples)
        return np.clip(np.searchsorted(self.ends, pos, side="right"), 0, len(self.ends) - 1)

    def density_profile(self, num_samples: int) -> np.ndarray:
        """
        Args:
            num_samples (int): samples along the chromosome, p telomere first.

        Returns:
            ndarray: (num_samples,) float32 stain density at the sample centres.
        """
        density = np.array([STAIN_DENSITY[s] for s in self.stains], dtype=np.float32)
        return density[self._band_at_samples(num_samples)]

    def stain_profile(self, num_samples: int) -> np.ndarray:
        """(num_samples,) array of stain names at the sample centres (see density_profile)."""
        return np.asarray(self.stains)[self._band_at_samples(num_samples)]


def _read_bed(assembly: str) -> Dict[str, List[Tuple[int, int, str, str]]]:
    text = (resources.files("pyryotype") / "static" / f"cytobands_{assembly}.bed").read_text()
    bands: Dict[str, List[Tuple[int, int, str, str]]] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) < 5 or not fields[0].startswith("chr"):
            continue
        bands.setdefault(fields[0][3:], []).append(
            (int(fields[1]), int(fields[2]), fields[3], fields[4].strip())
        )
    return bands


@functools.lru_cache(maxsize=None)
def load_ideograms() -> Dict[str, Ideogram]:
    """
    Returns:
        dict[str, Ideogram]: the 24 classes, keyed by canonical name.
    """
    tables = {assembly: _read_bed(assembly) for assembly in set(ASSEMBLY_OF_CLASS.values())}
    ideograms = {}
    for name in CLASS_NAMES:
        rows = sorted(tables[ASSEMBLY_OF_CLASS[name]][name])
        starts = np.array([r[0] for r in rows], dtype=np.int64)
        ends = np.array([r[1] for r in rows], dtype=np.int64)
        stains = tuple(r[3] for r in rows)
        acen = [i for i, s in enumerate(stains) if s == "acen"]
        assert len(acen) == 2, f"chr{name}: expected two acen bands, got {len(acen)}"
        ideograms[name] = Ideogram(
            name=name,
            starts=starts,
            ends=ends,
            stains=stains,
            length=int(ends[-1]),
            centromere=float(ends[acen[0]]),
        )
    return ideograms
