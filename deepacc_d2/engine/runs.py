"""
Whether an output folder's run is reused, resumed or started: the one decision that the CIL
recipe (its detector training), the Table 1 study (each row and seed) and the crop classifier's
training take before they run. Each reads its own folder (checkpoints, result files) and hands
over what it found: the settings the run there was made with and how far it got.
"""

import logging
from typing import Dict, Optional

logger = logging.getLogger(__name__)

__all__ = ["START", "RESUME", "REUSE", "OtherSettingsError", "other_settings", "run_decision"]

START, RESUME, REUSE = "start", "resume", "reuse"


class OtherSettingsError(ValueError):
    """An output folder holds a run made with other settings than those asked for."""


def other_settings(made_with: Dict, settings: Dict) -> Dict:
    """
    Returns:
        dict: key -> (value there, value here), for each key whose value differs (a key only
        one side has counts as None on the other), in sorted order.
    """
    keys = sorted(set(made_with) | set(settings))
    return {
        k: (made_with.get(k), settings.get(k)) for k in keys if made_with.get(k) != settings.get(k)
    }


def run_decision(
    folder: str,
    settings: Dict,
    made_with: Optional[Dict],
    done: int,
    total: int = 1,
    *,
    if_other: str = "refuse",
    advice: str = "use another output folder",
) -> str:
    """
    Decide what to do with the run in ``folder``.

    Args:
        folder (str): the run's output folder (or file), named in the messages.
        settings (dict): what this call would make the run with (json-like values).
        made_with (dict or None): what the run there was made with; None: not recorded (taken
            to be ``settings``).
        done (int): the steps it has done (0: no run there).
        total (int): the steps a finished run has done with ``settings``.
        if_other (str): a run made with other settings: "refuse" (raise
            :class:`OtherSettingsError`) or "start" (start over, logged).
        advice (str): what the message says to do about other settings.

    Returns:
        str: :data:`REUSE` (finished with these settings), :data:`RESUME` (begun with these
        settings, not finished) or :data:`START` (no run, or ``if_other="start"`` and other
        settings).
    """
    if if_other not in ("refuse", "start"):
        raise ValueError(f"if_other must be refuse or start, not {if_other!r}")
    if done <= 0:
        return START
    differ = other_settings(made_with, settings) if made_with is not None else {}
    if differ:
        shown = "; ".join(
            f"{k}: {there!r} there, {here!r} here" for k, (there, here) in differ.items()
        )
        message = f"{folder} was made with other settings ({shown}): {advice}"
        if if_other == "refuse":
            raise OtherSettingsError(message)
        logger.info(message)
        return START
    return REUSE if done >= total else RESUME
