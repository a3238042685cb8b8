"""
Training on the CPU under bfloat16 autocast (``SOLVER.CPU_BF16``): whether this machine's CPU
has the instructions, and whether a run uses it.
"""

import logging

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


def use_cpu_bf16(cfg) -> bool:
    """``cfg.SOLVER.CPU_BF16`` resolved for this machine (logged)."""
    mode = str(cfg.SOLVER.CPU_BF16).lower()
    if mode not in ("on", "off", "auto"):
        raise ValueError(f"SOLVER.CPU_BF16 must be on, off or auto, not {cfg.SOLVER.CPU_BF16!r}")
    if not cfg.MODEL.DEVICE.startswith("cpu") or mode == "off":
        return False
    has_bf16 = cpu_has_bf16()
    on = mode == "on" or has_bf16
    logger.info(
        f"CPU training under bfloat16 autocast: {'yes' if on else 'no'} "
        f"(SOLVER.CPU_BF16={mode}, bf16 instructions: {has_bf16})"
    )
    return on
