"""
Make detectron2 v0.6 importable and usable on today's stack, without touching its files.

``apply()`` runs once, from ``deepacc_d2/__init__.py``, before anything imports detectron2's
modules. Each fix below checks first whether it is needed and does nothing otherwise, so on a
full source build of detectron2 (v0.6 or main) with a matching stack it changes nothing.

1. ``detectron2._C`` missing (Python-only install from the ``pb1-detectron2`` sdist):
   ``layers/`` and ``evaluation/fast_eval_api.py`` import it at module load. A stand-in module
   is registered whose every op raises :class:`MissingDetectron2Extension`, saying which op
   needs the extension and how to get a full build. Only rotated boxes, deformable conv and
   the fast COCOeval need it; this project uses none of them.
2. Pillow >= 10 has no ``Image.LINEAR`` (an alias of ``Image.BILINEAR`` it removed).
3. setuptools >= 81 has no ``pkg_resources``; ``detectron2.model_zoo`` imports it for
   ``resource_filename`` only. That module is imported with a minimal stand-in providing
   just that, which is then removed from ``sys.modules`` again.
4. numpy >= 1.24 removed the aliases ``np.bool``/``np.int``/``np.float``/``np.object``
   used by detectron2 0.6 (``structures/masks.py``, ``data/build.py``, evaluators).
5. torch >= 2.6 ``torch.load`` defaults to ``weights_only=True``; fvcore's Checkpointer
   then refuses checkpoints that hold plain Python objects. Loading first tries the safe
   mode and only falls back to a full unpickle (the pre-2.6 behaviour detectron2 was
   written for) for a file that the safe mode rejects, with a warning.
6. Python >= 3.11's ``random.sample`` refuses sets; detectron2 0.6's ``MapDataset`` samples
   one to replace an item its mapper rejected, so one unreadable image would end training.
7. torch >= 2.10 warns that ``torch.jit.script`` (which detectron2 0.6 applies at import) is
   deprecated, and that ``torch.meshgrid`` wants ``indexing``: those two messages only are
   silenced.
"""

import builtins
import functools
import importlib.util
import logging
import sys
import types
import warnings

__all__ = ["MissingDetectron2Extension", "apply", "has_detectron2_extension"]

logger = logging.getLogger(__name__)

_FULL_BUILD_HINT = (
    "This detectron2 was installed without its C++/CUDA extension (detectron2._C), as "
    "`make install` does from the pb1-detectron2 sdist. Build detectron2 from source to use "
    "it: `pip install --no-build-isolation "
    "'git+https://github.com/facebookresearch/detectron2.git'` (docs/install.md)."
)


class MissingDetectron2Extension(ImportError):
    """Raised when code needs an op of ``detectron2._C`` and the extension was not built."""


class _MissingExtensionModule(types.ModuleType):
    """Stand-in for ``detectron2._C``: importing works, using an op raises a clear error."""

    __deepacc_stub__ = True

    def __init__(self):
        super().__init__("detectron2._C", "stand-in registered by deepacc_d2.compat")

    # detectron2.utils.collect_env (called by default_setup) asks these three.
    @staticmethod
    def get_compiler_version():
        return "not built (Python-only detectron2)"

    @staticmethod
    def get_cuda_version():
        return "not built (Python-only detectron2)"

    @staticmethod
    def has_cuda():
        return False

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise MissingDetectron2Extension(f"detectron2._C.{name} is unavailable. {_FULL_BUILD_HINT}")


def has_detectron2_extension() -> bool:
    """True when a compiled ``detectron2._C`` exists (not our stand-in)."""
    mod = sys.modules.get("detectron2._C")
    if mod is not None:
        return not getattr(mod, "__deepacc_stub__", False)
    return importlib.util.find_spec("detectron2._C") is not None


def _fix_missing_extension():
    if importlib.util.find_spec("detectron2") is None:
        return False
    if "detectron2._C" in sys.modules or importlib.util.find_spec("detectron2._C") is not None:
        return False
    stub = _MissingExtensionModule()
    sys.modules["detectron2._C"] = stub
    import detectron2

    detectron2._C = stub
    _define_missing_nms_rotated()
    return True


_TORCH_LIBRARIES = []  # keep the Library object alive, or torch drops its definitions


def _define_missing_nms_rotated():
    """``layers.nms_rotated`` calls ``torch.ops.detectron2.nms_rotated``, an op that only
    the extension registers; define it so that a call names the cause."""
    import torch

    try:
        torch.ops.detectron2.nms_rotated  # noqa: B018  (raises when the op is missing)
        return
    except (AttributeError, RuntimeError):
        pass

    def nms_rotated(boxes, scores, iou_threshold):
        raise MissingDetectron2Extension(f"nms_rotated is unavailable. {_FULL_BUILD_HINT}")

    lib = torch.library.Library("detectron2", "FRAGMENT")
    lib.define("nms_rotated(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms_rotated", nms_rotated, "CompositeExplicitAutograd")
    _TORCH_LIBRARIES.append(lib)


def _fix_pillow_linear():
    from PIL import Image

    if hasattr(Image, "LINEAR"):
        return False
    Image.LINEAR = Image.BILINEAR
    return True


def resource_filename(package: str, resource: str) -> str:
    """``pkg_resources.resource_filename`` for a package installed as plain files."""
    import importlib.resources

    return str(importlib.resources.files(package).joinpath(resource))


def _fix_pkg_resources():
    """Give ``detectron2.model_zoo`` the one function it needs, without leaving a partial
    ``pkg_resources`` in ``sys.modules`` for other libraries to trip on."""
    try:
        import pkg_resources  # noqa: F401

        return False
    except ImportError:
        pass
    if importlib.util.find_spec("detectron2") is None:
        return False
    shim = types.ModuleType("pkg_resources", "minimal stand-in registered by deepacc_d2.compat")
    shim.resource_filename = resource_filename
    saved = sys.modules.get("pkg_resources", _ABSENT)
    sys.modules["pkg_resources"] = shim
    try:
        from detectron2.model_zoo import model_zoo
    finally:
        if saved is _ABSENT:
            del sys.modules["pkg_resources"]
        else:
            sys.modules["pkg_resources"] = saved
    if not hasattr(model_zoo, "pkg_resources"):
        return False  # a detectron2 that no longer uses it
    model_zoo.pkg_resources = shim
    return True


_ABSENT = object()


# Each removed alias meant the builtin type, which is what detectron2 0.6 needs.
_NUMPY_ALIASES = {
    "bool": builtins.bool,
    "int": builtins.int,
    "float": builtins.float,
    "object": builtins.object,
}


def _fix_numpy_aliases():
    import numpy as np

    added = []
    for name, value in _NUMPY_ALIASES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on the way to removing an alias
            present = hasattr(np, name)
        if not present:
            setattr(np, name, value)
            added.append(name)
    return added


def _weights_only_is_default() -> bool:
    import torch
    from packaging.version import Version

    # torch >= 2.6: torch.load(weights_only=None) means True.

    return Version(torch.__version__.split("+")[0]) >= Version("2.6")


def load_trusted_checkpoint(load_file):
    """Wrap a ``Checkpointer._load_file``: safe ``weights_only`` load first, full unpickle
    as the fallback for files the safe mode rejects (as torch < 2.6 always did)."""

    @functools.wraps(load_file)
    def _load_file(self, f):
        import pickle

        import torch

        try:
            return load_file(self, f)
        except pickle.UnpicklingError as e:
            if "weights_only" not in str(e):
                raise
            logger.warning(
                f"{f}: holds objects that torch.load(weights_only=True) refuses; loading it with "
                "weights_only=False as torch < 2.6 did. Only load checkpoints you trust."
            )
            return torch.load(f, map_location=torch.device("cpu"), weights_only=False)

    _load_file.__deepacc_wrapped__ = True
    return _load_file


class _SampleableSet(set):
    """A set that ``random.sample`` accepts (Python >= 3.11 takes sequences only)."""

    def __getitem__(self, i):
        return sorted(self)[i]


def _fix_map_dataset_retry():
    """
    detectron2 0.6's ``MapDataset`` draws a replacement for an item its mapper rejects
    (``None``) with ``random.sample`` over a *set*, which Python >= 3.11 refuses (TypeError):
    one unreadable image would end training. Its candidate set is made one that can be
    sampled; what is drawn is unchanged.
    """
    import collections.abc
    import random

    from detectron2.data import common

    try:
        random.Random(0).sample({0}, k=1)
        return False  # this Python still samples sets
    except TypeError:
        pass
    if getattr(common.MapDataset.__init__, "_deepacc_fixed", False):
        return True
    collections.abc.Sequence.register(_SampleableSet)
    original = common.MapDataset.__init__

    @functools.wraps(original)
    def __init__(self, dataset, map_func):
        original(self, dataset, map_func)
        if isinstance(getattr(self, "_fallback_candidates", None), set):
            self._fallback_candidates = _SampleableSet(self._fallback_candidates)

    __init__._deepacc_fixed = True
    common.MapDataset.__init__ = __init__
    return True


def _fix_torch_load():
    if not _weights_only_is_default():
        return False
    try:
        from fvcore.common.checkpoint import Checkpointer
    except ImportError:
        return False
    if getattr(Checkpointer._load_file, "__deepacc_wrapped__", False):
        return False
    Checkpointer._load_file = load_trusted_checkpoint(Checkpointer._load_file)
    return True


_APPLIED = None


def _quiet_jit_script_deprecation():
    """detectron2 0.6 decorates a few functions with ``torch.jit.script`` when imported, and
    torch >= 2.10 warns that it is deprecated; its anchors call ``torch.meshgrid`` without
    ``indexing``: nothing a user can act on. Only those two messages are silenced."""
    import torch

    if not hasattr(torch.jit, "script"):
        return False
    warnings.filterwarnings(
        "ignore", message="`torch.jit.script` is deprecated", category=FutureWarning
    )
    # detectron2 0.6's anchor generator calls torch.meshgrid without `indexing` (its
    # behaviour is the default, "ij"); torch warns on every first call.
    warnings.filterwarnings(
        "ignore", message="torch.meshgrid: in an upcoming release", category=UserWarning
    )
    return True


def apply():
    """
    Apply every fix that this stack needs, once.

    Returns:
        dict: fix name -> what it did (False / [] when it was not needed).
    """
    global _APPLIED
    if _APPLIED is None:
        _APPLIED = {
            "jit_script_warning": _quiet_jit_script_deprecation(),  # before detectron2 loads
            "numpy_aliases": _fix_numpy_aliases(),
            "pillow_linear": _fix_pillow_linear(),
            "detectron2_C": _fix_missing_extension(),
            "pkg_resources": _fix_pkg_resources(),
            "torch_load": _fix_torch_load(),
            "map_dataset_retry": _fix_map_dataset_retry(),
        }
        done = [name for name, what in _APPLIED.items() if what]
        logger.debug(f"compatibility fixes applied: {', '.join(done) or 'none'}")
    return _APPLIED
