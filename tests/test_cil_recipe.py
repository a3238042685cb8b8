"""The CIL recipe (deepacc_d2/recipe.py): where a training stands, which decides between
training, training on from the last checkpoint, and reusing the model."""

import torch

from deepacc_d2 import recipe


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
