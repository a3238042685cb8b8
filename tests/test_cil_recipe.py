"""The CIL recipe (deepacc_d2/studies/recipe.py): where a training stands, which decides between
training, training on from the last checkpoint, and reusing the model."""

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
