"""A killed run resumed with --resume trains on the same batches, with the same augmentations,
LR and sampling, as an uninterrupted run: its losses are the uninterrupted run's."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import deepacc_d2  # noqa: F401
from deepacc_d2.data.stream import ResumableTrainLoader

from detectron2.data.common import AspectRatioGroupedDataset
from detectron2.data.samplers import TrainingSampler
from detectron2.utils.events import EventStorage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Landscape (w > h) and portrait images; image 3 cannot be read.
SIZES = [(320, 240), (240, 320), (320, 240), (320, 240), (240, 320), (320, 240), (240, 320)]
BAD = 3


def _dicts():
    return [{"image_id": i, "width": w, "height": h} for i, (w, h) in enumerate(SIZES)]


def _mapper(d):
    if d["image_id"] == BAD:
        return None
    # np.random as detectron2's augmentations use it; the pid says which process mapped it
    return {
        "image_id": d["image_id"],
        "landscape": d["width"] > d["height"],
        "flip": int(np.random.randint(1 << 30)),
        "pid": os.getpid(),
    }


def _batches(num_workers, start, count):
    loader = ResumableTrainLoader(
        _dicts(), _mapper, seed=3, batch_size=2, aspect_ratio_grouping=True, num_workers=num_workers
    )
    with EventStorage(start):  # as in detectron2's trainer at iteration `start`
        stream = iter(loader)
        return [next(stream) for _ in range(count)]


def _without_pid(batches):
    return [[{k: v for k, v in d.items() if k != "pid"} for d in b] for b in batches]


def test_batches_depend_only_on_the_iteration():
    numpy_state = np.random.get_state()[1].copy()
    uninterrupted = _batches(num_workers=0, start=0, count=12)
    assert np.array_equal(np.random.get_state()[1], numpy_state)  # the trainer's is untouched
    resumed = _batches(num_workers=2, start=5, count=7)
    assert len({d["pid"] for b in resumed for d in b} - {os.getpid()}) == 2  # two workers
    assert _without_pid(resumed) == _without_pid(uninterrupted[5:])

    for batch in uninterrupted:
        assert len(batch) == 2 and batch[0]["landscape"] == batch[1]["landscape"]
    ids = [d["image_id"] for b in uninterrupted for d in b]
    assert set(ids) == set(range(len(SIZES))) - {BAD}
    # an image seen twice is augmented anew each time
    flips = {}
    for d in (d for b in uninterrupted for d in b):
        flips.setdefault(d["image_id"], set()).add(d["flip"])
    assert any(len(f) > 1 for f in flips.values())


def test_grouping_forms_detectron2s_batches():
    # the index stream and aspect-ratio grouping of detectron2's loader with the same seed
    loader = ResumableTrainLoader(
        _dicts(), _mapper, seed=3, batch_size=2, aspect_ratio_grouping=True
    )
    ours = loader.batches()
    dicts = _dicts()
    theirs = iter(AspectRatioGroupedDataset((dicts[i] for i in TrainingSampler(7, seed=3)), 2))
    for _ in range(20):
        assert [i for _, i in next(ours)] == [d["image_id"] for d in next(theirs)]


# train_net.main, recording each iteration's losses and LR; SIGKILLs itself after the
# iteration KILL_AT (not a checkpoint iteration: that iteration's work is lost).
DRIVER = r"""
import json, os, signal, sys
import train_net
from deepacc_d2.engine import trainer
from detectron2.engine import HookBase, default_argument_parser
from deepacc_d2.data.synthetic import register_synth_onthefly

log, kill_at = sys.argv[1], int(sys.argv[2])
register_synth_onthefly("synth_resume_test", 6, seed=1, image_size=(160, 208))


class Record(HookBase):
    def after_step(self):
        storage = self.trainer.storage
        line = {k: storage.history(k).latest() for k in storage.histories()
                if k.startswith("loss") or k in ("total_loss", "lr")}
        with open(log, "a") as f:
            f.write(json.dumps(dict(line, iter=self.trainer.iter)) + "\n")
        if self.trainer.iter == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordingTrainer(trainer.Trainer):
    def build_hooks(self):
        return super().build_hooks() + [Record()]


trainer.Trainer = RecordingTrainer  # what train_net.main builds
train_net.main(default_argument_parser().parse_args(sys.argv[3:]))
"""
MAX_ITER, KILL_AT = 7, 4  # checkpoints after iterations 1 and 3


def _train(tmp_path, name, out, kill_at=-1, resume=False, num_workers=0, extra_opts=()):
    log = tmp_path / f"{name}.jsonl"
    args = ["--config-file", "configs/cpu/f_deepacc_cpu.yaml"] + (["--resume"] if resume else [])
    opts = [
        "OUTPUT_DIR",
        str(out),
        "SEED",
        "4",
        "DATASETS.TRAIN",
        "('synth_resume_test',)",
        "DATASETS.TEST",
        "()",
        "INPUT.MIN_SIZE_TRAIN",
        "(144, 160)",
        "INPUT.MAX_SIZE_TRAIN",
        "224",
        "INPUT.ROTATE_90",
        "True",
        "INPUT.INTENSITY_JITTER",
        "0.2",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN",
        "100",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
        "64",
        "SOLVER.MAX_ITER",
        str(MAX_ITER),
        "SOLVER.STEPS",
        "()",
        "SOLVER.WARMUP_ITERS",
        "10",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "SOLVER.CPU_BF16",
        "off",
        "DATALOADER.NUM_WORKERS",
        str(num_workers),
        *extra_opts,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(log), str(kill_at)] + args + opts,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if not log.exists():  # no step recorded (a piece paused after its first step)
        return proc, {}
    with open(log) as f:
        return proc, {r["iter"]: r for r in map(json.loads, f)}


@pytest.mark.slow
def test_killed_run_resumes_exactly(tmp_path):
    proc, uninterrupted = _train(tmp_path, "uninterrupted", tmp_path / "a")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc, killed = _train(tmp_path, "killed", tmp_path / "b", kill_at=KILL_AT, num_workers=2)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert sorted(killed) == list(range(KILL_AT + 1))
    assert (tmp_path / "b" / "last_checkpoint").read_text() == "model_0000003.pth"
    proc, resumed = _train(tmp_path, "resumed", tmp_path / "b", resume=True, num_workers=1)
    assert proc.returncode == 0, proc.stderr[-3000:]

    assert sorted(uninterrupted) == list(range(MAX_ITER))
    assert sorted(resumed) == list(range(KILL_AT, MAX_ITER))  # KILL_AT's step was lost
    for it in range(KILL_AT + 1):  # the same run so far: the comparison below is meaningful
        assert killed[it] == uninterrupted[it], it
    for it in resumed:  # losses and LR
        assert resumed[it] == uninterrupted[it], (it, resumed[it], uninterrupted[it])
    # in warm-up the LR differs at every iteration: a schedule restarted at 0 would show
    assert len({r["lr"] for r in uninterrupted.values()}) == MAX_ITER


@pytest.mark.slow
def test_finished_run_extended_by_a_warm_restart(tmp_path):
    """A finished cosine run, trained on with --resume under a longer schedule that restarts
    where it ended, is the first part of that longer schedule's run, and the rest equals it too
    (losses and LR): how the CIL recipe extends its learning curve."""
    restart = ["SOLVER.LR_SCHEDULER_NAME", "WarmupCosineLR", "SOLVER.WARMUP_ITERS", "2"]
    restart += ["SOLVER.COSINE_RESTARTS", "(4,)", "SOLVER.RESTART_LR_FACTOR", "0.5"]
    whole_opts = restart + ["SOLVER.MAX_ITER", "7"]
    proc, whole = _train(tmp_path, "whole", tmp_path / "a", extra_opts=whole_opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    short_opts = restart + ["SOLVER.MAX_ITER", "4"]  # the restart at MAX_ITER is dropped
    proc, short = _train(tmp_path, "short", tmp_path / "b", extra_opts=short_opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc, extended = _train(
        tmp_path, "extended", tmp_path / "b", resume=True, extra_opts=whole_opts
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    assert sorted(short) == list(range(4)) and sorted(extended) == list(range(4, 7))
    for it, row in {**short, **extended}.items():
        assert row == whole[it], (it, row, whole[it])
    base_lr = 0.01  # configs/cpu/Base-DeepACC-CPU.yaml
    assert whole[4]["lr"] == pytest.approx(0.5 * base_lr)  # the restart's peak
    assert whole[3]["lr"] < 0.5 * whole[4]["lr"]  # the first cycle had ended near 0


@pytest.mark.slow
def test_a_run_paused_by_time_resumes_exactly(tmp_path):
    """SOLVER.STOP_AFTER_MINUTES: the first piece stops after its first step, at a checkpoint;
    --resume pieces go on, and the whole is the uninterrupted run (losses and LR)."""
    proc, uninterrupted = _train(tmp_path, "uninterrupted", tmp_path / "a")
    assert proc.returncode == 0, proc.stderr[-3000:]
    pause = ["SOLVER.STOP_AFTER_MINUTES", "1e-6"]  # due after any step
    proc, first = _train(tmp_path, "first", tmp_path / "b", extra_opts=pause)
    assert proc.returncode == 0 and "paused after iteration 1 of 7" in proc.stdout, proc.stdout
    assert (tmp_path / "b" / "last_checkpoint").read_text() == "model_0000000.pth"
    proc, second = _train(tmp_path, "second", tmp_path / "b", resume=True, extra_opts=pause)
    assert proc.returncode == 0 and "paused after iteration 2 of 7" in proc.stdout
    proc, rest = _train(tmp_path, "rest", tmp_path / "b", resume=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(rest) == list(range(2, MAX_ITER))
    for it in rest:
        assert rest[it] == uninterrupted[it], (it, rest[it], uninterrupted[it])
