"""The one decision of whether an output folder's run is reused, resumed or started
(deepacc_d2/engine/runs.py)."""

import pytest

from deepacc_d2.engine.runs import (
    RESUME,
    REUSE,
    START,
    OtherSettingsError,
    other_settings,
    run_decision,
)

SETTINGS = {"opts": ["SOLVER.BASE_LR", "0.01"], "seed": 0}


def test_finished_unfinished_absent():
    assert run_decision("out", SETTINGS, None, done=0, total=100) == START  # nothing there
    assert run_decision("out", SETTINGS, dict(SETTINGS), done=40, total=100) == RESUME
    assert run_decision("out", SETTINGS, dict(SETTINGS), done=100, total=100) == REUSE
    # a schedule since extended: the finished run goes on
    assert run_decision("out", SETTINGS, dict(SETTINGS), done=100, total=150) == RESUME
    assert run_decision("out", SETTINGS, None, done=100, total=100) == REUSE  # not recorded
    # no step done: nothing to lose, whatever the folder says
    assert run_decision("out", SETTINGS, {"seed": 1}, done=0, total=100) == START


def test_other_settings_are_refused_or_started_over(caplog):
    made_with = {"opts": [], "seed": 0, "old": 1}
    assert other_settings(made_with, SETTINGS) == {
        "old": (1, None),
        "opts": ([], ["SOLVER.BASE_LR", "0.01"]),
    }
    with pytest.raises(OtherSettingsError) as e:
        run_decision("output/x", SETTINGS, made_with, done=100, total=100, advice="use --fresh")
    assert str(e.value) == (
        "output/x was made with other settings (old: 1 there, None here; "
        "opts: [] there, ['SOLVER.BASE_LR', '0.01'] here): use --fresh"
    )
    assert isinstance(e.value, ValueError)
    with caplog.at_level("INFO", logger="deepacc_d2.engine.runs"):
        decision = run_decision("r.json", SETTINGS, {"seed": 0}, 1, if_other="start")
    assert decision == START and "r.json was made with other settings (opts: " in caplog.text
    with pytest.raises(ValueError, match="refuse or start"):
        run_decision("out", SETTINGS, None, 1, if_other="ignore")
