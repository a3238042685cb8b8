"""End to end, as a user runs it: synthetic data on disk -> train_net.py trains (loss goes
down) -> checkpoint -> train_net.py --eval-only with the karyotype metrics and pictures, and
`deepacc eval` writing the same."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, env):
    proc = subprocess.run(
        [sys.executable] + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_train_then_eval_on_synthetic(tmp_path):
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "datasets"))
    _run(
        [
            "-m",
            "deepacc_d2.app.cli",
            "synth",
            "--out",
            str(tmp_path / "datasets" / "synth_tiny"),
            "--num-images",
            "4",
            "--seed",
            "3",
            "--image-size",
            "240",
            "320",
            "--val-fraction",
            "0.25",
            "--no-progress",
        ],
        env,
    )
    out = tmp_path / "out"
    small = [
        "INPUT.MIN_SIZE_TRAIN",
        "(240,)",
        "INPUT.MAX_SIZE_TRAIN",
        "320",
        "INPUT.MIN_SIZE_TEST",
        "240",
        "INPUT.MAX_SIZE_TEST",
        "320",
        "DATASETS.TRAIN",
        "('synth_tiny_train',)",
        "DATASETS.TEST",
        "('synth_tiny_val',)",
    ]
    _run(
        [
            "train_net.py",
            "--config-file",
            "configs/cpu/f_deepacc_cpu.yaml",
            "SOLVER.MAX_ITER",
            "60",
            "SOLVER.STEPS",
            "()",
            "SOLVER.WARMUP_ITERS",
            "10",
            "INPUT.RANDOM_FLIP",
            "none",
            "SEED",
            "0",
            "OUTPUT_DIR",
            str(out),
        ]
        + small,
        env,
    )

    with open(out / "metrics.json") as f:
        history = [json.loads(line) for line in f if '"total_loss"' in line]
    losses = [h["total_loss"] for h in history]
    assert len(losses) >= 3, history
    assert all(v == v and v < 1e3 for v in losses)  # finite
    print("logged windows:", history)
    # A short noisy run: assert the robust part, the RPN learning what is a chromosome
    # (its objectness loss starts at log 2).
    assert history[-1]["loss_rpn_cls"] < 0.8 * history[0]["loss_rpn_cls"], history
    assert "loss_aam" in history[-1] and "loss_gia" in history[-1]
    assert os.path.isfile(out / "model_final.pth")

    _run(
        [
            "train_net.py",
            "--config-file",
            "configs/cpu/f_deepacc_cpu.yaml",
            "--eval-only",
            "MODEL.WEIGHTS",
            str(out / "model_final.pth"),
            "OUTPUT_DIR",
            str(out),
        ]
        + small,
        env,
    )
    inference = out / "inference" / "synth_tiny_val"
    with open(inference / "karyotype_details.json") as f:
        details = json.load(f)
    metrics = details["metrics"]
    for key in ("mAP", "mAPmax", "Acc", "AER", "COCO_AP50"):
        assert key in metrics
    # one val image of a 45..47-chromosome cell: the ground-truth count is that cell's
    assert 45 <= metrics["num_gt"] <= 47
    assert os.path.isfile(inference / "karyotype_confusion.png")

    # `deepacc eval` runs the same evaluation: the same files, the same numbers
    cli_out = tmp_path / "cli_eval"
    _run(
        [
            "-m",
            "deepacc_d2.app.cli",
            "eval",
            "--config-file",
            "configs/cpu/f_deepacc_cpu.yaml",
            "--weights",
            str(out / "model_final.pth"),
            "--output",
            str(cli_out),
            "--opts",
        ]
        + small,
        env,
    )
    assert sorted(os.listdir(cli_out)) == sorted(os.listdir(inference))
    for name in ("evaluation.json", "karyotype_details.json"):
        # NaN (a class without ground truth) read as a string, which compares equal
        texts = [(d / name).read_text() for d in (inference, cli_out)]
        assert json.loads(texts[0], parse_constant=str) == json.loads(texts[1], parse_constant=str)


def test_trainer_loader_draws_onthefly_images():
    # the Trainer's loader must draw on-the-fly synthetic images (no file on disk)
    from deepacc_d2 import add_deepacc_config
    from deepacc_d2.data.synthetic import register_synth_onthefly
    from deepacc_d2.engine.trainer import Trainer

    from detectron2.config import get_cfg

    register_synth_onthefly("synth_test_loader", 8, seed=5, image_size=(240, 320))
    cfg = get_cfg()
    add_deepacc_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", "cpu", "Base-DeepACC-CPU.yaml"))
    cfg.merge_from_list(
        [
            "DATASETS.TRAIN",
            "('synth_test_loader',)",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "INPUT.MIN_SIZE_TRAIN",
            "(240,)",
            "INPUT.MAX_SIZE_TRAIN",
            "320",
        ]
    )
    batch = next(iter(Trainer.build_train_loader(cfg)))
    assert len(batch) == 2
    for item in batch:
        assert tuple(item["image"].shape) == (3, 240, 320)
        # one cell: 45..47 chromosomes, as its stored karyotype says
        assert 45 <= len(item["instances"]) <= 47
        assert item["karyotype"].startswith(str(len(item["instances"])))
