"""The CIL recipe (deepacc_d2/studies/recipe.py): where a training stands, which decides between
training, training on from the last checkpoint, and reusing the model."""

import json
import os

import pytest
import torch

from deepacc_d2.engine.runs import RESUME, REUSE, START
from deepacc_d2.studies import recipe


def test_trained_iterations_reads_the_last_checkpoint(tmp_path):
    assert recipe.trained_iterations(str(tmp_path / "none")) == 0  # never trained
    torch.save({"model": {}, "iteration": 649}, tmp_path / "model_0000649.pth")
    torch.save({"model": {}, "iteration": 1299}, tmp_path / "model_final.pth")
    (tmp_path / "last_checkpoint").write_text("model_0000649.pth")
    assert recipe.trained_iterations(str(tmp_path)) == 650  # iteration 649 was the 650th
    (tmp_path / "last_checkpoint").write_text("model_final.pth")
    assert recipe.trained_iterations(str(tmp_path)) == 1300
    (tmp_path / "last_checkpoint").write_text("model_0001949.pth")  # names a deleted file
    assert recipe.trained_iterations(str(tmp_path)) == 0


def test_iteration_override_reaches_training_and_the_plan():
    args = recipe.argparse.Namespace(config=recipe.CONFIG, device="cpu", opts=[], iters=0)
    assert recipe.iteration_opts(args) == []
    args.iters = 123
    assert recipe.iteration_opts(args) == ["SOLVER.MAX_ITER", "123"]
    assert recipe.planned_iterations(args) == 123


def _args(out, *flags):
    return recipe.parse_args(["--out", str(out), "--iters", "1300", *flags])


def test_training_plan_of_a_hand_made_folder(tmp_path):
    """Start, train on, reuse, or refuse other --opts: what the recipe does with --out/model."""
    args = _args(tmp_path)
    assert recipe.training_plan(args, {}) == (START, 0, 1300)  # nothing there
    model = tmp_path / "model"
    model.mkdir()
    torch.save({"model": {}, "iteration": 649}, model / "model_0000649.pth")
    (model / "last_checkpoint").write_text("model_0000649.pth")
    assert recipe.training_plan(args, {}) == (RESUME, 650, 1300)  # killed before its summary
    summary = {"opts": []}
    assert recipe.training_plan(args, summary) == (RESUME, 650, 1300)
    other = _args(tmp_path, "--opts", "SOLVER.BASE_LR", "0.01")
    with pytest.raises(SystemExit, match=r"model was made with other settings \(opts: \[\] there"):
        recipe.training_plan(other, summary)  # paused with other --opts
    torch.save({"model": {}, "iteration": 1299}, model / "model_final.pth")
    (model / "last_checkpoint").write_text("model_final.pth")
    assert recipe.training_plan(args, summary) == (REUSE, 1300, 1300)
    longer = recipe.parse_args(["--out", str(tmp_path), "--iters", "2000"])
    assert recipe.training_plan(longer, summary) == (RESUME, 1300, 2000)  # a schedule extended
    with pytest.raises(SystemExit, match="pass the same --opts, another --out, or --fresh"):
        recipe.training_plan(other, {})  # a finished model without a summary had no --opts
    assert recipe.training_plan(other, {"opts": ["SOLVER.BASE_LR", "0.01"]})[0] == REUSE


def test_arguments_that_contradict_each_other(tmp_path):
    with pytest.raises(SystemExit, match="pick one"):
        _args(tmp_path, "--synth-iters", "10", "--init", "w.pth")
    with pytest.raises(SystemExit, match="cannot be trained in pieces"):
        _args(tmp_path, "--synth-iters", "10", "--opts", "SOLVER.STOP_AFTER_MINUTES", "5")


def test_fitted_iterations_by_hand():
    # 480 s left, 30 s of start-up, 10 % reserved: 405 s at 0.25 s per iteration -> 1620
    assert recipe.fitted_iterations(0.25, 480.0, 30.0) == 1620
    assert recipe.fitted_iterations(0.25, 480.0, 30.0, upper=1000) == 1000  # --iters bounds it
    assert recipe.fitted_iterations(2.0, 10.0, 30.0) == 1  # no time left: one iteration
    with pytest.raises(ValueError, match="must be > 0"):
        recipe.fitted_iterations(0.0, 480.0, 30.0)


def test_fit_schedule_keeps_its_length_and_refuses_an_unfitted_training(tmp_path, monkeypatch):
    def no_probe(*a):
        raise AssertionError("a training under way is not timed again")

    monkeypatch.setattr(recipe, "probe_speed", no_probe)
    args = recipe.parse_args(["--out", str(tmp_path), "--fit-minutes", "8"])
    recipe.fit_schedule(args, {"fit_iters": 1710}, "", 0.0)
    assert args.iters == 1710  # the next piece of a fitted training: the same schedule
    model = tmp_path / "model"
    model.mkdir()
    torch.save({"model": {}, "iteration": 99}, model / "model_0000099.pth")
    (model / "last_checkpoint").write_text("model_0000099.pth")
    with pytest.raises(SystemExit, match="begun without it"):
        recipe.fit_schedule(args, {}, "", 0.0)


def test_fit_schedule_from_a_timed_probe(tmp_path, monkeypatch):
    monkeypatch.setattr(recipe, "probe_speed", lambda args, init: (0.5, 20.0))
    args = recipe.parse_args(["--out", str(tmp_path), "--fit-minutes", "5", "--iters", "5000"])
    summary = {}
    start = recipe.time.time() - 60.0  # a minute already spent (the probe)
    recipe.fit_schedule(args, summary, "", start)
    # about 240 s left, 20 s of start-up: 220 * 0.9 / 0.5 = 396 (a second's slack either way)
    assert 394 <= args.iters <= 397
    assert summary["fit_iters"] == args.iters and summary["fit_seconds_per_iter"] == 0.5
    short = recipe.parse_args(["--out", str(tmp_path), "--fit-minutes", "5", "--iters", "40"])
    recipe.fit_schedule(short, {}, "", start)
    assert short.iters == 40  # shorter than the probe: nothing to fit
    with pytest.raises(SystemExit, match="leave out --synth-iters"):
        recipe.parse_args(["--out", str(tmp_path), "--fit-minutes", "5", "--synth-iters", "9"])


def test_probe_speed_reads_the_probe_logs_and_deletes_them(tmp_path, monkeypatch):
    seen = {}

    def fake_train(probe, out_dir, init):  # what detectron2 writes in 60 iterations
        seen.update(iters=probe.iters, opts=probe.opts, init=init)
        os.makedirs(out_dir)
        with open(os.path.join(out_dir, "metrics.json"), "w") as f:
            for it, t in ((19, 1.2), (39, 1.0), (59, 0.8)):
                f.write(json.dumps({"iteration": it, "time": t}) + "\n")
        with open(os.path.join(out_dir, "log.txt"), "w") as f:
            f.write("d2.engine.hooks]: Total training time: 0:00:56 (0:00:00 on hooks)\n")
        return 61.5

    monkeypatch.setattr(recipe, "train", fake_train)
    args = recipe.parse_args(["--out", str(tmp_path), "--fit-minutes", "8", "--opts", "A", "1"])
    seconds_per_iter, startup = recipe.probe_speed(args, "w.pth")
    assert seconds_per_iter == pytest.approx(1.0)  # the mean of the three windows
    assert startup == pytest.approx(5.5)  # 61.5 s in all, 56 s of them training
    assert seen["iters"] == recipe.FIT_PROBE_ITERS and seen["init"] == "w.pth"
    assert seen["opts"][:2] == ["A", "1"] and "DATASETS.TEST" in seen["opts"]  # no evaluation
    assert not (tmp_path / "fit_probe").exists()
    assert args.iters == 0  # the probe's own length stays the probe's
