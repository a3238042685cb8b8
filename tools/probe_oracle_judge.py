#!/usr/bin/env python
"""
The ceiling of the choice among the candidates (docs/studies/counting.md, "What a perfect
judge would count"); not part of the product: the stage table (tools/count_stages.py, its own
arguments after P) with the candidate judge replaced by the truth: probability P for the one
box of a chromosome (:func:`deepacc_d2.app.karyotype.candidates.one_box_labels`), 1 - P for
every other candidate; the assignment chooses and names as shipped.

    python tools/probe_oracle_judge.py 0.999 --weights cil-r18-crops --dataset cil24_val \\
        --out output/count_stages
"""

import os
import sys

import numpy as np


def main(p: float, argv):
    from deepacc_d2.app.karyotype import cell
    from deepacc_d2.app.karyotype.candidates import one_box_labels
    from deepacc_d2.studies import count_stages as stages

    truth = {}
    record_of = stages.detection_record

    def detection_record(record, detections):
        truth["gt_boxes"] = record["gt_boxes"]  # the cell that is judged next
        return record_of(record, detections)

    def oracle(path, boxes, class_scores):
        is_one, _ = one_box_labels(boxes, truth["gt_boxes"])
        return np.where(is_one, p, 1.0 - p)

    stages.detection_record = detection_record
    cell.judge_probabilities = oracle
    sys.path.insert(0, os.path.dirname(__file__))
    import count_stages

    count_stages.main(argv)


if __name__ == "__main__":
    import deepacc_d2  # noqa: F401

    main(float(sys.argv[1]), sys.argv[2:])
