"""Checkpoints of an interrupted run: atomic saves, resume past a truncated last file, and a
NaN loss that stops training with the iteration and the loss terms; trained weights that do
not fit the model are refused."""

import logging
import os

import pytest
import torch
from torch import nn

import deepacc_d2  # noqa: F401
from deepacc_d2.engine.checkpoint import AtomicCheckpointer, TrainedWeightsCheckpointer

from detectron2.engine import SimpleTrainer


def test_atomic_save_and_resume_past_a_truncated_checkpoint(tmp_path, caplog):
    model = nn.Linear(3, 2)
    checkpointer = AtomicCheckpointer(model, str(tmp_path), save_to_disk=True)
    for iteration in (9, 19):
        with torch.no_grad():
            model.weight.fill_(float(iteration))
        checkpointer.save(f"model_{iteration:07d}", iteration=iteration)
    assert sorted(os.listdir(tmp_path)) == [
        "last_checkpoint",
        "model_0000009.pth",
        "model_0000019.pth",
    ]  # no partial file left
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000019.pth"
    # The last file is cut short (a full disk, a copy interrupted).
    last = tmp_path / "model_0000019.pth"
    last.write_bytes(last.read_bytes()[:100])
    fresh = nn.Linear(3, 2)
    with caplog.at_level(logging.WARNING):
        loaded = AtomicCheckpointer(fresh, str(tmp_path)).resume_or_load("", resume=True)
    assert loaded["iteration"] == 9 and torch.all(fresh.weight == 9.0)
    assert "cannot resume from" in caplog.text and "model_0000019.pth" in caplog.text
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"


class _NaNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, batch):
        return {"loss_fine": self.w * 1.0, "loss_broken": self.w * float("nan")}


def test_nan_loss_stops_training_naming_iteration_and_term():
    model = _NaNModel()
    trainer = SimpleTrainer(model, iter([None] * 4), torch.optim.SGD(model.parameters(), 0.1))
    with pytest.raises(FloatingPointError) as info:
        trainer.train(0, 2)
    assert "iteration=0" in str(info.value) and "loss_broken" in str(info.value)


def test_trained_weights_that_leave_part_of_the_model_unset_are_refused(tmp_path):
    trained = nn.Sequential(nn.Linear(3, 2))
    path = str(tmp_path / "trained.pth")
    torch.save({"model": trained.state_dict()}, path)
    same = nn.Sequential(nn.Linear(3, 2))
    TrainedWeightsCheckpointer(same).load(path)
    assert torch.equal(same[0].weight, trained[0].weight)
    bigger = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))  # another config's model
    with pytest.raises(
        ValueError, match=r"trained\.pth: .*2 parameters missing: 1\.bias, 1\.weight"
    ):
        TrainedWeightsCheckpointer(bigger).load(path)
    smaller = nn.Sequential()  # the file has weights this model does not
    with pytest.raises(ValueError, match=r"2 parameters not in the model: 0\.bias, 0\.weight"):
        TrainedWeightsCheckpointer(smaller).load(path)
