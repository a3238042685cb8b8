import os

import pytest
import torch

from deepacc_d2 import model_zoo
from deepacc_d2.model_zoo import MODELS, resolve_model, save_half_weights

from detectron2.checkpoint import DetectionCheckpointer


def test_half_weights_load_into_a_float32_model(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(40, 30), torch.nn.GroupNorm(5, 30))
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("full")
    full = tmp_path / "full.pth"
    digest, size = save_half_weights(str(full), str(tmp_path / "half.pth"))
    assert size == os.path.getsize(tmp_path / "half.pth") and len(digest) == 64
    assert size < 0.7 * os.path.getsize(full)

    fresh = torch.nn.Sequential(torch.nn.Linear(40, 30), torch.nn.GroupNorm(5, 30))
    DetectionCheckpointer(fresh).load(str(tmp_path / "half.pth"))
    for (name, p), q in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert q.dtype == torch.float32, name
        assert torch.equal(q, p.half().float()), name  # float16 rounding, nothing else


def test_a_named_model_is_checked_against_its_sha256(tmp_path, monkeypatch):
    weights = tmp_path / "m.pth"
    weights.write_bytes(b"weights")
    config = tmp_path / "c.yaml"
    config.write_text("MODEL: {}\n")
    monkeypatch.setattr(model_zoo, "REPO", str(tmp_path))
    good = model_zoo._sha256(str(weights))
    monkeypatch.setitem(MODELS, "tiny", ("c.yaml", "m.pth", good))
    assert resolve_model("tiny") == (str(config), str(weights))
    monkeypatch.setitem(MODELS, "tiny", ("c.yaml", "m.pth", "0" * 64))
    with pytest.raises(ValueError, match="not the published file"):
        resolve_model("tiny")


def test_unknown_weights_and_missing_config_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model"):
        resolve_model("no-such-model")
    ckpt = tmp_path / "x.pth"
    ckpt.write_bytes(b"")
    with pytest.raises(ValueError, match="--config-file"):
        resolve_model(str(ckpt))
    assert resolve_model(str(ckpt), __file__) == (__file__, str(ckpt))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shipped_models_are_whole(name):
    config, weights = resolve_model(name)  # exists, sha256 as published
    assert os.path.getsize(weights) <= 50 * 2**20
    state = torch.load(weights, map_location="cpu", weights_only=True)["model"]
    assert all(v.dtype != torch.float32 for v in state.values())
