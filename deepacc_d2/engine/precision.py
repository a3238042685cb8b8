"""
Training and inference on the CPU under bfloat16 autocast (``SOLVER.CPU_BF16``,
``TEST.CPU_BF16``): whether this machine's CPU has the instructions, and whether a run uses it.
"""

import contextlib
import logging

import torch

logger = logging.getLogger(__name__)


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (avx512_bf16 or AMX), from /proc/cpuinfo;
    False where that file does not exist."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def use_cpu_bf16(cfg, training: bool = True) -> bool:
    """``cfg.SOLVER.CPU_BF16`` (training) or ``cfg.TEST.CPU_BF16`` resolved for this machine
    (logged)."""
    key = "SOLVER.CPU_BF16" if training else "TEST.CPU_BF16"
    value = cfg.SOLVER.CPU_BF16 if training else cfg.TEST.CPU_BF16
    mode = str(value).lower()
    if mode not in ("on", "off", "auto"):
        raise ValueError(f"{key} must be on, off or auto, not {value!r}")
    if not cfg.MODEL.DEVICE.startswith("cpu") or mode == "off":
        return False
    has_bf16 = cpu_has_bf16()
    on = mode == "on" or has_bf16
    logger.info(
        f"CPU {'training' if training else 'inference'} under bfloat16 autocast: "
        f"{'yes' if on else 'no'} ({key}={mode}, bf16 instructions: {has_bf16})"
    )
    return on


def cpu_bf16_inference(cfg, model):
    """
    A context for running ``model`` as ``TEST.CPU_BF16`` says: where bf16 is used, the model
    is switched to channels-last memory (faster bf16 convolutions on the CPU) and the forward
    pass runs under bf16 autocast; otherwise nothing changes.
    """
    if not isinstance(model, torch.nn.Module) or not use_cpu_bf16(cfg, training=False):
        return contextlib.nullcontext()  # an exported model runs as it was exported
    model.to(memory_format=torch.channels_last)
    if not getattr(model, "_outputs_as_float32", False):
        model.register_forward_hook(_outputs_as_float32)
        model._outputs_as_float32 = True
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _outputs_as_float32(module, inputs, outputs):
    # bf16 fields (numpy has no bf16) of each image's Instances back to float32
    for out in outputs:
        inst = out.get("instances") if isinstance(out, dict) else None
        if inst is None:
            continue
        for name, value in inst.get_fields().items():
            if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16:
                inst.set(name, value.float())
    return outputs
