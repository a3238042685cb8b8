"""
Trained models shipped in the repository, by short name (``MODEL_ZOO.md`` has their cards).

    config_file, weights, opts = resolve_model("cil-r18-crops")
    cfg = setup_cfg(config_file, opts, weights)

The model zoo's files are the repository's ``configs/`` and ``models/``. An installed package
(``pip install .``) carries a copy of both in ``deepacc_d2/model_zoo_files/`` (setup.py makes it
when it builds the package); a checkout or an editable install reads the repository's own.
``$DEEPACC_MODELS`` names another folder that holds the weights files (the same files: each is
checked against its sha256).
"""

import os
from typing import Dict, List, Optional, Tuple

import torch

from ..engine.files import file_sha256

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # deepacc_d2/
_PACKAGED = os.path.join(_PACKAGE, "model_zoo_files")
_CHECKOUT = os.path.dirname(_PACKAGE)
# the folder that holds the model zoo's configs/ and models/
ROOT = _PACKAGED if os.path.isdir(_PACKAGED) else _CHECKOUT
MODELS_ENV = "DEEPACC_MODELS"  # a folder to read the weights files from instead of ROOT/models

DETECTOR = (
    "cil_r18_deepacc.pth",
    "dffa670e2de7ee61433eea05e10a9398786191484e45b03cc3f92f8cf937ed2f",
)
CROP_CLASSIFIER = (
    "cil_crop_classifier.pth",
    "858bc88822db90424eb9fdcaa461b44ea6ae561210590d78e4b28183aac403fc",
)

# name -> (config file, (weights file, sha256), {config key: (further weights file, sha256)}):
# config files relative to ROOT/configs, weights files to the models folder (models_dir())
CANDIDATE_JUDGE = (
    "cil_candidate_judge.pth",
    "8dab35671007e9425728ca58a7824917e7bf40cb3db1516b4fbec4cafa22fc09",
)
CANDIDATE_JUDGE_MIRROR = (
    "cil_candidate_judge_mirror.pth",
    "4136ebec3cbbe1c1ec72394f0d1a24a5e9634dcb0365056757b392a53263ce6e",
)

MODELS = {
    "cil-r18-deepacc": ("cpu/f_deepacc_cil_r18.yaml", DETECTOR, {}),
    "cil-r18-crops": (
        "cpu/f_deepacc_cil_r18_crops.yaml",
        DETECTOR,
        {
            "MODEL.SECOND_LOOK.WEIGHTS": CROP_CLASSIFIER,
            "TEST.KARYOTYPE.COUNT_JUDGE": CANDIDATE_JUDGE,
        },
    ),
    "cil-r18-crops-mirror": (
        "cpu/f_deepacc_cil_r18_crops_mirror.yaml",
        DETECTOR,
        {
            "MODEL.SECOND_LOOK.WEIGHTS": CROP_CLASSIFIER,
            "TEST.KARYOTYPE.COUNT_JUDGE": CANDIDATE_JUDGE_MIRROR,
        },
    ),
}


def models_dir() -> str:
    """The folder of the weights files: ``$DEEPACC_MODELS`` where set, else ROOT/models."""
    return os.path.expanduser(os.environ.get(MODELS_ENV) or os.path.join(ROOT, "models"))


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
    return file_sha256(path), os.path.getsize(path)


def _published_file(name: str, file_name: str, digest: str) -> str:
    path = os.path.join(models_dir(), file_name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"model {name!r}: {path} is missing (the weights files are read from "
            f"${MODELS_ENV} where set, else from {os.path.join(ROOT, 'models')})"
        )
    if file_sha256(path) != digest:
        raise ValueError(
            f"model {name!r}: {path} is not the published file (sha256 differs from "
            f"MODEL_ZOO.md; a git-lfs pointer or a modified copy?)"
        )
    return path


def _own_config(name: str) -> str:
    return os.path.join(ROOT, "configs", MODELS[name][0])


def model_record(weights: str, config_file: Optional[str] = None) -> Dict:
    """
    What a case records of the model that made it (``case.json``'s "model").

    Args:
        weights, config_file (str): as :func:`resolve_model` takes them (``--weights``,
            ``--config-file``).

    Returns:
        dict: "weights" as given (a model name or a checkpoint's path), "config_file" (a named
        model's own by default) and, for a named model, "sha256": its weights files' digests
        (the published files': :func:`resolve_model` checks them).
    """
    record = {"weights": weights, "config_file": config_file}
    if weights in MODELS:
        _, main, further = MODELS[weights]
        record["config_file"] = config_file or _own_config(weights)
        record["sha256"] = dict([main, *further.values()])
    return record


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
        _, (path, digest), further = MODELS[weights]
        path = _published_file(weights, path, digest)
        for key, (other, other_digest) in further.items():
            opts += [key, _published_file(weights, other, other_digest)]
        config_file = config_file or _own_config(weights)
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
