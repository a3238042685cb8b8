"""
Two processes on the CPU (gloo): the DeepACC model trains a few iterations under
DistributedDataParallel, its siamese branch still takes each image's centers from that image
alone, and the evaluator's gathered metrics equal a one-process evaluation of the same
predictions. (detectron2 0.6's ``launch`` is CUDA-only, so the processes are started here.)
"""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import deepacc_d2  # noqa: F401
from deepacc_d2.evaluation.karyotype_evaluation import KaryotypeEvaluator, evaluate_predictions

WORLD = 2
THRESHOLDS = dict(iou_thresh=0.5, score_thresh=0.5, nms_thresh=0.7)  # the config's defaults
# Rods on a light 128 x 128 image, as in test_roi_heads; four images of different layouts.
LAYOUTS = [
    ([(10, 10, 30, 60), (50, 20, 62, 70), (80, 80, 120, 95)], [0, 1, 5]),
    ([(20, 90, 60, 110), (70, 10, 82, 60)], [22, 20]),
    ([(5, 5, 20, 50), (40, 40, 90, 52), (100, 60, 112, 120)], [2, 9, 13]),
    ([(60, 60, 75, 110)], [21]),
]


def _image(i):
    from detectron2.structures import BoxMode

    boxes, classes = LAYOUTS[i]
    image = torch.full((3, 128, 128), 220.0)
    for x0, y0, x1, y1 in boxes:
        image[:, y0:y1, x0:x1] = 40.0
    return {
        "image": image,
        "height": 128,
        "width": 128,
        "image_id": i,
        "annotations": [
            {"bbox": list(b), "bbox_mode": BoxMode.XYXY_ABS, "category_id": c}
            for b, c in zip(boxes, classes)
        ],
    }


def _train_input(i):
    from detectron2.structures import Boxes, Instances

    d = _image(i)
    targets = Instances((128, 128))
    targets.gt_boxes = Boxes(
        torch.tensor([a["bbox"] for a in d["annotations"]], dtype=torch.float32)
    )
    targets.gt_classes = torch.tensor([a["category_id"] for a in d["annotations"]])
    return dict(d, instances=targets)


def _worker(rank, init_file, out_dir):
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from test_roi_heads import small_cfg

    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.manual_seed(0)  # the same initial weights in both processes
    # δ below every cosine: each class with a candidate uses a local center, so centers
    # taken across the two images of a batch would change image 0's scores
    model = build_model(small_cfg("f_deepacc_cpu.yaml", SIAMESE__DELTA=-0.99))
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    with EventStorage():
        for _ in range(3):  # each process its own image
            losses = ddp([_train_input(rank)])
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
    # the processes hold the same weights after synchronised steps
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum()
    sums = [torch.zeros_like(checksum) for _ in range(WORLD)]
    dist.all_gather(sums, checksum)
    model.eval()
    with torch.no_grad():
        pair = model([_image(0), _image(1)])
        alone = model([_image(0)])
    # batched and single convolutions may differ in the last float bits, nothing more
    a, b = pair[0]["instances"], alone[0]["instances"]
    per_image = (
        len(a) == len(b) > 0
        and torch.allclose(a.scores, b.scores, atol=1e-4)
        and torch.allclose(a.class_scores, b.class_scores, atol=1e-4)
    )
    evaluator = KaryotypeEvaluator(None, None, distributed=True, **THRESHOLDS)
    mine = [i for i in range(len(LAYOUTS)) if i % WORLD == rank]
    predictions = []
    with torch.no_grad():
        for i in mine:
            outputs = model([_image(i)])
            evaluator.process([_image(i)], outputs)
            predictions.append((i, outputs[0]["instances"]))
    metrics = evaluator.evaluate()
    torch.save(
        {"predictions": predictions, "metrics": metrics, "sums": sums, "per_image": per_image},
        os.path.join(out_dir, f"rank{rank}.pt"),
    )
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_train_and_gather_metrics(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    assert torch.allclose(ranks[0]["sums"][0], ranks[0]["sums"][1])
    assert all(r["per_image"] for r in ranks)  # centers per image, also in a batch of two
    assert ranks[1]["metrics"] == {}  # only the main process reports
    gathered = ranks[0]["metrics"]["karyotype"]
    # one process, the same predictions in the order gather returns them (rank 0, then 1)
    pairs = [(_image(i), inst) for r in ranks for i, inst in r["predictions"]]
    single = evaluate_predictions(pairs, **THRESHOLDS)["karyotype"]
    assert gathered["num_gt"] == sum(len(b) for b, _ in LAYOUTS) == single["num_gt"]
    for key, value in single.items():
        assert (value != value and gathered[key] != gathered[key]) or value == gathered[key], key
