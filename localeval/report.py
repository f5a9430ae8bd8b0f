"""What the user reads in the terminal: the aggregates, a per-row table, and where the run is."""

from __future__ import annotations

import math
import textwrap
from typing import Any

from .candidate import answer_failed
from .runner import ModelResult, Outcome

WIDTH = 100
UNSCORED_SHOWN = 300  # characters of an unparseable judge reply shown in the terminal


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.3g}"
    return str(value)


def _judge_names(table: Any) -> list[str]:
    return [
        c.removesuffix("/score")
        for c in table.columns
        if c.endswith("/score") and f"{c.removesuffix('/score')}/justification" in table.columns
    ]


def _wrap(label: str, text: Any, indent: int = 4) -> str:
    text = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)
    prefix = " " * indent + f"{label}: "
    return textwrap.fill(
        " ".join(text.split()) or "—",
        WIDTH,
        initial_indent=prefix,
        subsequent_indent=" " * (len(prefix)),
    )


def format_rows(result: ModelResult) -> str:
    """Every row in full: question, answer, each judge's score and justification; no truncation."""
    table = result.table
    judges = _judge_names(table)
    lines = []
    for index, row in table.iterrows():
        lines.append(f"[{index + 1}] " + " ".join(str(row["inputs"]).split()))
        if answer_failed(row.get("candidate_error")):
            lines.append(_wrap("FAILED", row["candidate_error"]))
        else:
            lines.append(_wrap("answer", row["answer"]))
        for judge in judges:
            score = row[f"{judge}/score"]
            shown = (
                "unscored"
                if score is None or (isinstance(score, float) and math.isnan(score))
                else _fmt(float(score))
            )
            text = str(row[f"{judge}/justification"] or "")
            if shown == "unscored" and len(text) > UNSCORED_SHOWN:
                text = text[:UNSCORED_SHOWN] + " … (full reply in the MLflow run's eval table)"
            lines.append(_wrap(f"{judge.split('/')[0]} = {shown}", text))
    return "\n".join(lines)


def format_metrics(metrics: dict[str, float]) -> str:
    width = max((len(k) for k in metrics), default=0)
    return "\n".join(f"  {k:<{width}}  {_fmt(v)}" for k, v in sorted(metrics.items()))


def format_comparison(results: list[ModelResult]) -> str:
    """A model × metric table of the judges' means and the main heuristics."""
    suffixes = ("/mean", "unscored_ratio", "/ci_low", "/ci_high", "exact_match/v1")
    keys = sorted({k for r in results for k in r.metrics if k.endswith(suffixes)})
    head = ["metric"] + [r.model.id for r in results]
    rows = [[k] + [_fmt(r.metrics.get(k, float("nan"))) for r in results] for k in keys]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(out)


def format_outcome(outcome: Outcome) -> str:
    parts = []
    for note in outcome.notes:
        parts.append(f"note: {note}")
    for result in outcome.results:
        parts.append(f"\n=== {result.model.id} ({result.model.base_url}) — run {result.run_id}")
        parts.append("Aggregated metrics:\n" + format_metrics(result.metrics))
        parts.append("\nPer-row results:\n" + format_rows(result))
        if result.failed_rows:
            parts.append(
                f"\n{result.failed_rows} row(s) failed after retries (FAILED answers or "
                "'unscored: judge_error' verdicts above)."
            )
    if len(outcome.results) > 1:
        parts.append("\nComparison (model × metric):\n" + format_comparison(outcome.results))
    for c in outcome.comparisons:
        r = c.result
        verdict = "better" if r.ci_low > 0 else "worse" if r.ci_high < 0 else "not distinguishable"
        parts.append(
            f"  {c.b} vs {c.a} on {c.metric.removesuffix('/score')}: {r.mean_diff:+.3g} "
            f"[{r.ci_low:+.3g}, {r.ci_high:+.3g}] over {r.n_pairs} rows, "
            f"P(b better) {r.p_b_better:.2f}: {verdict}"
        )
    parts.append(
        f"\nOpen the results in the MLflow UI:\n  mlflow ui --backend-store-uri "
        f"{outcome.tracking_uri} --port 5000\n  then http://127.0.0.1:5000/#/experiments/"
        f"{outcome.experiment_id}"
    )
    return "\n".join(parts)
