"""
From detections to what a lab reads: per cell a karyotype record (counts, ISCN call, review
flags) and a karyogram picture; per case the clonal karyotype over its cells.
"""

from ...iscn import case_karyotype, gains_and_losses, karyotype_counts, numerical_karyotype

__all__ = ["case_karyotype", "gains_and_losses", "karyotype_counts", "numerical_karyotype"]
