"""Head to head in MLflow: a pair's figures as metrics on the active run, its rows as a table
artifact (`pairwise/<A>_vs_<B>.json`, a table in the run's artifact view), and each row's two
verdicts as assessments on B's trace of that row, through MLflow's public API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import mlflow
from mlflow.entities import AssessmentError, AssessmentSource, AssessmentSourceType

from ..judging.pairs import HeadToHead, OrderVerdict, Winner, pair_metrics
from ..types import Answer, Sample


def _label(h: HeadToHead, winner: Winner | None) -> str | None:
    """A winner by the name the metrics give it ("baseline" for a baseline run)."""
    return None if winner is None else {"a": h.a_metric or h.a, "b": h.b, "tie": "tie"}[winner]


def table(
    h: HeadToHead, samples: Sequence[Sample], a: Sequence[Answer], b: Sequence[Answer]
) -> dict[str, list]:
    """One line per row: both answers, both orders' verdicts and explanations, the row's."""
    columns: dict[str, list] = {k: [] for k in (
        "row", "id", "question", f"answer ({h.a})", f"answer ({h.b})", f"{h.a} first",
        f"{h.a} first: explanation", f"{h.b} first", f"{h.b} first: explanation", "verdict",
        "consistent", "unscored_reason", "human",
    )}  # fmt: skip
    for i, (row, sample) in enumerate(zip(h.rows, samples)):
        one, two = row.winners()
        values = (
            i + 1, sample.id, sample.input, a[i].text, b[i].text,
            _label(h, one) if row.a_first.pick else None, row.a_first.explanation,
            _label(h, two) if row.b_first.pick else None, row.b_first.explanation,
            _label(h, row.outcome), row.consistent, row.reason, _label(h, row.human),
        )  # fmt: skip
        for column, value in zip(columns, values):
            columns[column].append(value)
    return columns


def _feedback(
    h: HeadToHead, trace_id: str, verdict: OrderVerdict, winner: Winner, first: str, source: str
) -> None:
    """One order's verdict on B's trace of the row: the winner's name, or the reason for none."""
    error = None
    if verdict.pick is None:
        error = AssessmentError(
            error_code=verdict.reason or "no_verdict", error_message=verdict.raw
        )
    mlflow.log_feedback(
        trace_id=trace_id,
        name=f"{h.version.partition('/')[0]} vs {h.a_metric or h.a}",
        value=None if error else _label(h, winner),
        rationale=verdict.explanation,
        error=error,
        source=AssessmentSource(source_type=AssessmentSourceType.LLM_JUDGE, source_id=source),
        metadata={
            "order": f"{first} shown first",
            "pair": f"{h.b} vs {h.a}",
            "prompt_version": h.version,
        },
    )


def log(
    h: HeadToHead,
    samples: Sequence[Sample],
    answers: tuple[Sequence[Answer], Sequence[Answer]],
    traces: Mapping[int, str],
    source: str,
) -> None:
    """The pair's metrics and table on the active run; both verdicts of each row on `traces`
    (row index -> trace id of B's row; rows without a trace are skipped)."""
    mlflow.log_metrics(pair_metrics(h))
    mlflow.log_table(table(h, samples, *answers), artifact_file=f"{h.prefix}.json")
    for i, row in enumerate(h.rows):
        if i not in traces or row.a_first.reason == "no_answer":  # nothing was asked
            continue
        one, two = row.winners()
        _feedback(h, traces[i], row.a_first, one, h.a_metric or h.a, source)
        _feedback(h, traces[i], row.b_first, two, h.b, source)
