"""The heuristic metrics that run offline: exact match, readability, latency and token usage.

MLflow's question-answering defaults are not used as a whole: `token_count` downloads a tiktoken
file and, offline, aborts the whole evaluation. Token counts come from the server's `usage` instead.
"""

from __future__ import annotations

import importlib.util
from inspect import Parameter, Signature
from typing import Any


def _usage_metric(column: str, greater_is_better: bool) -> Any:
    import numpy as np
    from mlflow.metrics import MetricValue, make_metric

    def eval_fn(predictions: Any, metrics: Any, column_values: Any) -> Any:
        values = [None if v is None or v != v else float(v) for v in column_values]
        present = np.array([v for v in values if v is not None], dtype=float)
        aggregates = (
            {
                "mean": float(present.mean()),
                "total": float(present.sum()),
                "p90": float(np.percentile(present, 90)),
            }
            if len(present)
            else {}
        )
        return MetricValue(scores=values, aggregate_results=aggregates)

    # MLflow passes metric arguments by the parameter names: name the third after the column.
    eval_fn.__signature__ = Signature(  # type: ignore[attr-defined]
        [Parameter(n, Parameter.POSITIONAL_OR_KEYWORD) for n in ("predictions", "metrics", column)]
    )
    return make_metric(eval_fn=eval_fn, greater_is_better=greater_is_better, name=column)


def _readability_unavailable() -> str | None:
    """Why textstat cannot score here, or None. A metric failing on MLflow's first-row test
    aborts the whole evaluation, so it is tried once on a known sentence first."""
    if importlib.util.find_spec("textstat") is None:
        return "the textstat package is not installed"
    try:
        import textstat

        textstat.flesch_kincaid_grade("MLflow is an open-source platform.")
        textstat.automated_readability_index("MLflow is an open-source platform.")
    except Exception as exc:  # e.g. a textstat release that wants to download NLTK data
        return f"textstat failed offline ({type(exc).__name__}: {str(exc).strip()[:120]})"
    return None


def _answered_rows_only(builtin: Any, has_targets: bool) -> Any:
    """An MLflow built-in metric computed over the rows the candidate answered.

    MLflow's own would score a failed row's empty answer (exact_match 0.75 instead of 1.0 with one
    row failed of four); failed rows are counted in `candidate/failed_rows` instead.
    """
    import pandas as pd
    from mlflow.metrics import MetricValue, make_metric

    from .candidate import answer_failed

    def eval_fn(predictions: Any, metrics: Any, candidate_error: Any, *targets: Any) -> Any:
        # MLflow's first-row check passes one prediction but whole extra-output columns.
        keep = [not answer_failed(error) for error in candidate_error][: len(predictions)]
        answered = pd.Series([p for p, k in zip(predictions, keep) if k], dtype=object)
        target = (
            pd.Series([t for t, k in zip(targets[0], keep) if k], dtype=object) if targets else None
        )
        if answered.empty:
            return MetricValue(scores=[None] * len(keep))
        value = builtin.eval_fn(answered, target, metrics)
        if value is None or value.scores is None:
            return value
        scores = iter(value.scores)
        return MetricValue(
            scores=[next(scores) if k else None for k in keep],
            justifications=value.justifications,
            aggregate_results=value.aggregate_results,
        )

    names = ("predictions", "metrics", "candidate_error", *(("targets",) if has_targets else ()))
    eval_fn.__signature__ = Signature(  # type: ignore[attr-defined]
        [Parameter(n, Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    )
    return make_metric(
        eval_fn=eval_fn,
        greater_is_better=builtin.greater_is_better,
        name=builtin.name,
        version=builtin.version,
    )


def offline_metrics(has_targets: bool) -> tuple[list[Any], list[str]]:
    """The metrics that can run here, and one line for each that cannot, saying why."""
    import mlflow.metrics as m

    chosen: list[Any] = []
    skipped: list[str] = []
    if has_targets:
        chosen.append(_answered_rows_only(m.exact_match(), has_targets))
    else:
        skipped.append("exact_match skipped: the data has no ground truth")
    if (why := _readability_unavailable()) is None:
        chosen += [
            _answered_rows_only(m.flesch_kincaid_grade_level(), has_targets),
            _answered_rows_only(m.ari_grade_level(), has_targets),
        ]
    else:
        skipped.append(f"flesch_kincaid and ari skipped: {why}")
    chosen += [
        _usage_metric("latency_s", greater_is_better=False),
        _usage_metric("prompt_tokens", greater_is_better=False),
        _usage_metric("completion_tokens", greater_is_better=False),
    ]
    skipped.append(
        "token_count and toxicity skipped: they download files from a hub "
        "(token counts come from the server's usage instead)"
    )
    return chosen, skipped
