"""What the user reads in the terminal: the aggregates, every row in full, and where the run is."""

from __future__ import annotations

import textwrap

from .present import MISSING, fmt, human_summary, justification_text, paired, versus
from .types import HumanAgreement, ModelResult, Outcome, Score

WIDTH = 100
UNSCORED_SHOWN = 300  # characters of an unparseable judge reply shown in the terminal
# The heuristic metrics compared side by side, besides each judge's mean, interval and unscored
# share (ends of the metric keys).
COMPARED = ("/mean", "unscored_ratio", "/ci_low", "/ci_high", "exact_match/v1")


def _wrap(label: str, text: str | None, indent: int = 4) -> str:
    prefix = " " * indent + f"{label}: "
    return textwrap.fill(
        " ".join((text or "").split()) or MISSING,
        WIDTH,
        initial_indent=prefix,
        subsequent_indent=" " * len(prefix),
    )


def format_rows(result: ModelResult) -> str:
    """Every row in full: question, answer, each judge's score and justification; no truncation."""
    lines = []
    for row in result.rows:
        lines.append(f"[{row.index + 1}] " + " ".join(row.sample.input.split()))
        if row.answer.failed:
            lines.append(_wrap("FAILED", row.answer.error))
        else:
            lines.append(_wrap("answer", row.answer.text))
        for judge in result.judges:
            judgement = row.judgements.get(judge.key)
            score = judgement.combined if judgement else Score(None)
            text = justification_text(score)
            if not score.scored and len(text) > UNSCORED_SHOWN:
                text = text[:UNSCORED_SHOWN] + " … (full reply in the MLflow run's eval table)"
            shown = fmt(score.value, 3) if score.scored else "unscored"
            lines.append(_wrap(f"{judge.name} = {shown}", text))
    return "\n".join(lines)


def format_metrics(metrics: dict[str, float], undefined: dict[str, str] | None = None) -> str:
    """One `name  value` line per metric, sorted by name; an undefined one with why."""
    shown = {k: fmt(v, 3) for k, v in metrics.items()}
    shown.update({k: f"{MISSING} ({why})" for k, why in (undefined or {}).items()})
    width = max((len(k) for k in shown), default=0)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in sorted(shown.items()))


def format_matrix(agreement: HumanAgreement) -> str:
    """The judge × person counts: a row per judge grade, a column per person grade."""
    grades = agreement.grades
    lines = ["    judge \\ person " + " ".join(f"{g:>4}" for g in grades)]
    for grade, counts in zip(grades, agreement.matrix):
        lines.append(f"    {grade:>14} " + " ".join(f"{c:>4}" for c in counts))
    return "\n".join(lines)


def format_comparison(results: list[ModelResult]) -> str:
    """A model × metric table of the judges' means and the main heuristics."""
    keys = sorted({k for r in results for k in r.metrics if k.endswith(COMPARED)})
    head = ["metric"] + [r.model.id for r in results]
    rows = [[k] + [fmt(r.metrics.get(k), 3) for r in results] for k in keys]
    widths = [max(len(x) for x in column) for column in zip(head, *rows)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(out)


def format_outcome(outcome: Outcome) -> str:
    """The whole terminal report of a run: notes, each model's results, the comparison, the UI."""
    parts = [f"note: {note}" for note in outcome.notes]
    for result in outcome.results:
        parts.append(f"\n=== {result.model.id} ({result.model.base_url}) — run {result.run_id}")
        if result.rows or result.metrics:
            parts.append("Aggregated metrics:\n" + format_metrics(result.metrics, result.undefined))
        parts += [versus(c) for c in result.vs_baseline]
        for key, agreement in result.human.items():
            parts.append(human_summary(key, agreement) + "\n" + format_matrix(agreement))
        parts += [f"warning: {w}" for w in result.warnings]
        if result.rows:
            parts.append("\nPer-row results:\n" + format_rows(result))
        if result.failed_rows:
            parts.append(
                f"\n{result.failed_rows} row(s) failed after retries (FAILED answers or "
                "'unscored: judge_error' verdicts above)."
            )
    if len(outcome.results) > 1:
        parts.append("\nComparison (model × metric):\n" + format_comparison(outcome.results))
    parts += [f"  {paired(c).line}" for c in outcome.comparisons]
    parts.append(
        f"\nOpen the results in the MLflow UI:\n  mlflow ui --backend-store-uri "
        f"{outcome.tracking_uri} --port 5000\n  then http://127.0.0.1:5000/#/experiments/"
        f"{outcome.experiment_id}"
    )
    return "\n".join(parts)
