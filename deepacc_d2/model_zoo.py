"""
Trained models shipped in the repository, by short name (``MODEL_ZOO.md`` has their cards).

    config_file, weights, opts = resolve_model("cil-r18-crops")
    cfg = setup_cfg(config_file, opts, weights)
"""

import hashlib
import os
from typing import List, Optional, Tuple

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DETECTOR = (
    "models/cil_r18_deepacc.pth",
    "dffa670e2de7ee61433eea05e10a9398786191484e45b03cc3f92f8cf937ed2f",
)
CROP_CLASSIFIER = (
    "models/cil_crop_classifier.pth",
    "3ec43acccc3e3c251f9b4286b4864716cccbeb525937474b92680eb6023afcd8",
)

# name -> (config file, (weights file, sha256), {config key: (further weights file, sha256)}),
# paths relative to REPO
MODELS = {
    "cil-r18-deepacc": ("configs/cpu/f_deepacc_cil_r18.yaml", DETECTOR, {}),
    "cil-r18-crops": (
        "configs/cpu/f_deepacc_cil_r18_crops.yaml",
        DETECTOR,
        {"MODEL.SECOND_LOOK.WEIGHTS": CROP_CLASSIFIER},
    ),
}


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_half_weights(checkpoint: str, path: str) -> Tuple[str, int]:
    """
    Write a checkpoint's model weights alone (no optimizer, no scheduler), floating-point
    tensors as float16: half the size, and detectron2's checkpointer loads them into a float32
    model as they are.

    Returns:
        tuple[str, int]: the written file's sha256 and size in bytes.
    """

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({"model": state}, path)
    return _sha256(path), os.path.getsize(path)


def _published_file(name: str, path: str, digest: str) -> str:
    path = os.path.join(REPO, path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"model {name!r}: {path} is missing (the model zoo's files live in the repository "
            f"checkout)"
        )
    if _sha256(path) != digest:
        raise ValueError(
            f"model {name!r}: {path} is not the published file (sha256 differs from "
            f"MODEL_ZOO.md; a git-lfs pointer or a modified copy?)"
        )
    return path


def resolve_model(weights: str, config_file: Optional[str] = None) -> Tuple[str, str, List[str]]:
    """
    Args:
        weights (str): a model name of :data:`MODELS` or the path of a checkpoint.
        config_file (str): the model's YAML; optional for a named model (default: its own).

    Returns:
        tuple[str, str, list[str]]: (config file, weights file, config overrides that point
        the config at the model's further weights files), files that exist.
    """
    path, opts = weights, []
    if weights in MODELS:
        own_config, (path, digest), further = MODELS[weights]
        path = _published_file(weights, path, digest)
        for key, (other, other_digest) in further.items():
            opts += [key, _published_file(weights, other, other_digest)]
        config_file = config_file or os.path.join(REPO, own_config)
    elif not os.path.isfile(weights):
        known = ", ".join(sorted(MODELS)) or "none"
        raise FileNotFoundError(
            f"--weights {weights}: no such file and no such model (model names: {known})"
        )
    if not config_file:
        raise ValueError(
            f"--weights {weights}: give --config-file (only a named model knows its own)"
        )
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"{config_file}: no such config file")
    return config_file, path, opts
