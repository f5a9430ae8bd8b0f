"""The metrics handed to `mlflow.evaluate`: offline heuristics, usage, and the judges' verdicts.

The judges' metrics make no call: they hand MLflow the verdicts the run already has, so MLflow's
results table and aggregates are rendered from the typed per-row results. MLflow's
question-answering defaults are not used as a whole: `token_count` downloads a tiktoken file and,
offline, aborts the whole evaluation. Token counts come from the server's `usage` instead.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from inspect import Parameter, Signature
from typing import Any

import mlflow.metrics
import numpy as np
import pandas as pd
from mlflow.metrics import MetricValue, make_metric

from ..judging.judges import JudgeDef
from ..types import NOT_APPLICABLE, Answer, Judgement, Score


def _signature(fn: Any, names: Sequence[str]) -> None:
    # MLflow passes metric arguments by parameter name, and keeps in its results table only the
    # model's extra output columns that some metric names (our values come from the rows).
    fn.__signature__ = Signature([Parameter(n, Parameter.POSITIONAL_OR_KEYWORD) for n in names])


def shown(score: Score) -> str:
    """A verdict's text in MLflow's justification column: why first when it could not grade."""
    text = score.justification or ""
    if score.reason == NOT_APPLICABLE:  # not the judge's failure: no reference to compare with
        return f"[not applicable] {text}".strip()
    return f"[unscored: {score.reason}] {text}".strip() if score.reason else text


def judge_metric(judge: JudgeDef, rows: Sequence[Judgement], aggregates: dict[str, float]) -> Any:
    """The judge as an MLflow metric `<name>/<version>` that reports the run's verdicts."""
    combined = [j.combined for j in rows]

    def eval_fn(predictions: Any, metrics: Any, *columns: Any) -> MetricValue:
        n = len(predictions)  # MLflow first tries every metric on the first row alone
        return MetricValue(
            scores=[s.value for s in combined[:n]],
            justifications=[shown(s) for s in combined[:n]],
            aggregate_results=aggregates,
        )

    _signature(eval_fn, ("predictions", "metrics", "candidate_error", "cached"))
    return make_metric(
        eval_fn=eval_fn,
        greater_is_better=judge.greater_is_better,
        name=judge.name,
        version=judge.version,
        metric_details=str(judge.prompt),
    )


def _usage_metric(name: str, values: Sequence[float | None]) -> Any:
    def eval_fn(predictions: Any, metrics: Any, column: Any) -> MetricValue:
        scores = list(values[: len(predictions)])
        present = np.array([v for v in scores if v is not None], dtype=float)
        aggregates = (
            {
                "mean": float(present.mean()),
                "total": float(present.sum()),
                "p90": float(np.percentile(present, 90)),
            }
            if len(present)
            else {}
        )
        return MetricValue(scores=scores, aggregate_results=aggregates)

    _signature(eval_fn, ("predictions", "metrics", name))
    return make_metric(eval_fn=eval_fn, greater_is_better=False, name=name)


@functools.cache
def readability_unavailable() -> str | None:
    """Why textstat cannot score here, or None. A metric failing on MLflow's first-row test
    aborts the whole evaluation, so it is tried once on a known sentence first (once a process:
    its first use loads textstat's syllable dictionary, about a second)."""
    if importlib.util.find_spec("textstat") is None:
        return "the textstat package is not installed"
    try:  # an optional package, probed: imported only here
        import textstat

        textstat.flesch_kincaid_grade("MLflow is an open-source platform.")
        textstat.automated_readability_index("MLflow is an open-source platform.")
    except Exception as exc:  # e.g. a textstat release that wants to download NLTK data
        return f"textstat failed offline ({type(exc).__name__}: {str(exc).strip()[:120]})"
    return None


def _answered_rows_only(builtin: Any, answered: Sequence[bool], has_targets: bool) -> Any:
    """An MLflow built-in metric computed over the rows the candidate answered.

    MLflow's own would score a failed row's empty answer (exact_match 0.75 instead of 1.0 with one
    row failed of four); failed rows are counted in `candidate/failed_rows` instead.
    """

    def eval_fn(predictions: Any, metrics: Any, candidate_error: Any, *targets: Any) -> Any:
        keep = list(answered[: len(predictions)])
        kept = pd.Series([p for p, k in zip(predictions, keep) if k], dtype=object)
        target = (
            pd.Series([t for t, k in zip(targets[0], keep) if k], dtype=object) if targets else None
        )
        if kept.empty:
            return MetricValue(scores=[None] * len(keep))
        value = builtin.eval_fn(kept, target, metrics)
        if value is None or value.scores is None:
            return value
        scores = iter(value.scores)
        return MetricValue(
            scores=[next(scores) if k else None for k in keep],
            justifications=value.justifications,
            aggregate_results=value.aggregate_results,
        )

    names = ("predictions", "metrics", "candidate_error", *(("targets",) if has_targets else ()))
    _signature(eval_fn, names)
    return make_metric(
        eval_fn=eval_fn,
        greater_is_better=builtin.greater_is_better,
        name=builtin.name,
        version=builtin.version,
    )


def offline_metrics(answers: Sequence[Answer], has_targets: bool) -> tuple[list[Any], list[str]]:
    """The heuristic and usage metrics that can run here, and a line for each that cannot."""
    m = mlflow.metrics
    answered = [not a.failed for a in answers]
    chosen: list[Any] = []
    skipped: list[str] = []
    if has_targets:
        chosen.append(_answered_rows_only(m.exact_match(), answered, has_targets))
    else:
        skipped.append("exact_match skipped: the data has no ground truth")
    if (why := readability_unavailable()) is None:
        chosen += [
            _answered_rows_only(m.flesch_kincaid_grade_level(), answered, has_targets),
            _answered_rows_only(m.ari_grade_level(), answered, has_targets),
        ]
    else:
        skipped.append(f"flesch_kincaid and ari skipped: {why}")
    calls = [None if a.failed else a.call for a in answers]
    chosen += [
        _usage_metric("latency_s", [c.latency_s if c else None for c in calls]),
        _usage_metric("prompt_tokens", [c.prompt_tokens if c else None for c in calls]),
        _usage_metric("completion_tokens", [c.completion_tokens if c else None for c in calls]),
    ]
    skipped.append(
        "token_count and toxicity skipped: they download files from a hub "
        "(token counts come from the server's usage instead)"
    )
    return chosen, skipped
