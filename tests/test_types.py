"""The shared records: an unscored Score always says why and whose fault it is, and a row's
`failed` and `status` read the same classification."""

from __future__ import annotations

from typing import get_args

import pytest

from localeval.types import (
    BLAME,
    CANDIDATE_FAILED,
    INJECTION_SUSPECTED,
    JUDGE_ERROR,
    NOT_APPLICABLE,
    NOT_GRADED,
    OUT_OF_RANGE,
    PARSE_FAILURE,
    Answer,
    Call,
    Judgement,
    RowResult,
    Sample,
    Score,
    UnscoredReason,
    Verdict,
)

KEY = "answer_similarity/v1"


def _row(*scores: Score, answer: Answer | None = None, key: str = KEY) -> RowResult:
    """One row whose judge `key` gave `scores`, one endpoint each."""
    verdicts = tuple(Verdict(f"ep{i}", 0, s, Call(0.0, 0.1)) for i, s in enumerate(scores))
    answer = answer or Answer("A tool.", None, Call(0.0, 0.5))
    return RowResult(0, Sample("1", "What is MLflow?"), answer, {key: Judgement(verdicts)})


def test_the_reasons_keep_the_values_that_runs_logged_and_each_has_a_culprit():
    # Logged in results tables, judge_verdicts/*.json, traces and --output files: unchanged.
    assert (CANDIDATE_FAILED, JUDGE_ERROR, PARSE_FAILURE, OUT_OF_RANGE, INJECTION_SUSPECTED) == (
        "candidate_failed", "judge_error", "parse_failure", "out_of_range", "injection_suspected"
    )  # fmt: skip
    assert NOT_GRADED == "not_graded"
    assert set(BLAME) == set(get_args(UnscoredReason))
    assert {r for r, who in BLAME.items() if who == "candidate"} == {CANDIDATE_FAILED}
    assert {r for r, who in BLAME.items() if who is None} == {NOT_APPLICABLE}


def test_an_unscored_score_is_made_with_its_reason_and_never_without_one():
    score = Score.unscored(JUDGE_ERROR, "judge call failed: HTTP 500", "HTTP 500")
    assert score == Score(None, "judge call failed: HTTP 500", JUDGE_ERROR, "HTTP 500")
    assert not score.scored and score.blame == "judge"
    assert Score.unscored(CANDIDATE_FAILED).blame == "candidate"
    assert Score(4.0, "Close.").blame is None
    with pytest.raises(ValueError, match="reason"):
        Score(None)  # no score and no reason: "no score" said nothing
    with pytest.raises(ValueError, match="reason"):
        Score(4.0, "Close.", PARSE_FAILURE)


@pytest.mark.parametrize("reason", get_args(UnscoredReason))
def test_failed_and_status_read_the_same_culprit(reason):
    answered = BLAME[reason] != "candidate"
    answer = None if answered else Answer(None, "HTTP 500", Call(0.0, 0.5))
    row = _row(Score.unscored(reason, "why"), answer=answer)
    # Not applicable (no reference to compare with) is nobody's fault: the row is ok.
    expected = {"judge": "unscored", "candidate": "failed", None: "ok"}[BLAME[reason]]
    assert row.status == expected
    assert row.failed == (row.status == "failed")


def test_a_judge_error_on_an_answered_row_leaves_it_unscored_not_failed():
    """Regression: `failed` counted a judge error as a failed row, `status` as unscored."""
    row = _row(Score.unscored(JUDGE_ERROR, "judge call failed: timeout", "timeout"))
    assert row.status == "unscored" and not row.failed
    assert row.judge_failed  # a re-run asks for the verdict again
    no_answer = _row(
        Score.unscored(CANDIDATE_FAILED, "the candidate produced no answer"),
        answer=Answer(None, "HTTP 500", Call(0.0, 0.5)),
    )
    assert no_answer.status == "failed" and no_answer.failed and not no_answer.judge_failed
    scored = _row(Score(4.0, "Close."))
    assert scored.status == "ok" and not scored.failed and not scored.judge_failed


def test_one_endpoint_failing_of_two_keeps_the_row_scored():
    row = _row(Score(4.0, "Close."), Score.unscored(JUDGE_ERROR, "judge call failed", "HTTP 500"))
    assert row.status == "ok" and not row.failed and row.judge_failed


def test_nothing_scored_keeps_the_first_verdicts_reason():
    combined = (
        _row(
            Score.unscored(JUDGE_ERROR, "judge call failed", "HTTP 500"),
            Score.unscored(PARSE_FAILURE, "no score", "I cannot decide."),
        )
        .judgements[KEY]
        .combined
    )
    assert combined.reason == JUDGE_ERROR and combined.raw == "HTTP 500"


def _judgement(*values: float | None, combine="mean", greater_is_better=True, endpoints=None):
    """A judgement of one verdict per value, on `endpoints` (one per value unless given)."""
    names = endpoints or [f"ep{i}" for i in range(len(values))]
    scores = [
        Score.unscored(JUDGE_ERROR, "judge call failed", "HTTP 500") if v is None else Score(v)
        for v in values
    ]
    verdicts = tuple(Verdict(e, i, s) for i, (e, s) in enumerate(zip(names, scores, strict=True)))
    return Judgement(verdicts, combine, greater_is_better)


@pytest.mark.parametrize(
    ("values", "combine", "greater_is_better", "expected"),
    [
        pytest.param((4, 4, 2), "mean", True, 10 / 3, id="mean"),
        pytest.param((4, 4, 2), "majority", True, 4, id="majority"),
        # A split with no majority: the worse grade in the judge's sense, never the flattering one.
        pytest.param((4, 2), "majority", True, 2, id="tie_takes_the_lower_when_higher_is_better"),
        pytest.param((4, 2), "majority", False, 4, id="tie_takes_the_higher_when_lower_is_better"),
        pytest.param((5, 5, 1, 1, 3), "majority", True, 1, id="two_way_tie_of_three"),
    ],
)
def test_the_combination_is_the_judges_named_choice(values, combine, greater_is_better, expected):
    combined = _judgement(*values, combine=combine, greater_is_better=greater_is_better).combined
    assert combined.value == pytest.approx(expected)
    assert f"; {combine}]" in combined.justification


def test_an_endpoint_that_gave_no_score_is_shown_not_dropped_silently():
    partial = _judgement(4, None, combine="majority").combined
    assert partial.value == 4 and partial.endpoints == (1, 2)
    assert "[ep0: 4 | ep1: —; majority, 1 of 2 endpoints gave no score]" in partial.justification
    whole = _judgement(4, 2).combined
    assert whole.endpoints == (2, 2) and "gave no score" not in whole.justification
    # Repeats of one endpoint: an endpoint with any score counts as having scored.
    repeats = _judgement(4, None, endpoints=["chat", "chat"]).combined
    assert repeats.endpoints == (1, 1) and "gave no score" not in repeats.justification
    nothing = _judgement(None, None).combined
    assert not nothing.scored and nothing.endpoints == (0, 2)
