"""bench.overload's own parts: an arm's settings from the command line, and the summary that
sorts each answer by status and by whether it opened its connection."""

from __future__ import annotations

from bench.overload import Outcome, _arm, summarise


def test_an_arm_names_the_settings_it_changes():
    assert _arm("burst only=DIGITS_SHED_STANDING_AFTER_S=0.25,DIGITS_API_WORKERS=3") == (
        "burst only",
        (("DIGITS_SHED_STANDING_AFTER_S", "0.25"), ("DIGITS_API_WORKERS", "3")),
    )
    assert _arm("defaults") == ("defaults", ())


def test_answers_are_summarised_by_connection_and_status():
    outcomes = [Outcome(True, 503, s / 1000) for s in (10, 20, 30)] + [
        Outcome(False, 200, 0.1),
        Outcome(True, "ConnectionResetError", 2.0),
    ]
    summary = summarise(outcomes)
    assert set(summary) == {"new 503", "new ConnectionResetError", "reused 200"}
    assert summary["new 503"] == "3, p50 20 / p99 30 ms"
    assert summary["reused 200"] == "1, p50 100 / p99 100 ms"
