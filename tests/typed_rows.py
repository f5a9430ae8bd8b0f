"""Typed per-row results for the tests of what renders them (terminal, HTML, exports)."""

from __future__ import annotations

from localeval.types import (
    CANDIDATE_FAILED,
    PARSE_FAILURE,
    Answer,
    Call,
    Judgement,
    RowResult,
    Sample,
    Score,
    Verdict,
)

KEY = "answer_similarity/v1"


def graded_row(
    index: int = 0,
    *,
    inputs: str = "What is MLflow?",
    target: str | None = "A platform for the ML lifecycle.",
    context: str | None = None,
    answer: str = "A tool.",
    error: str | None = None,
    score: float | None = 4,
    justification: str = "Close to the target.",
    reason: str = PARSE_FAILURE,
) -> RowResult:
    """Row `index` graded by answer_similarity/v1: `error` fails it; `score=None` leaves it
    unscored with `reason` (the judge's text is `justification`)."""
    if error is not None:
        reply = Answer(None, error, Call(0.0, 0.5))
        verdict = Verdict(
            "chat", 0, Score.unscored(CANDIDATE_FAILED, "the candidate produced no answer")
        )
    else:
        reply = Answer(answer, None, Call(0.0, 0.5, prompt_tokens=10, completion_tokens=3))
        graded = Score(score, justification) if score is not None else None
        verdict = Verdict(
            "chat", 0, graded or Score.unscored(reason, justification), Call(0.0, 0.1)
        )
    sample = Sample(str(index), inputs, target, context)
    return RowResult(index, sample, reply, {KEY: Judgement((verdict,))})
