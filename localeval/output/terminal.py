"""What the user reads in the terminal: what ran, the headline, the rows, the headline again.

The headline (each judge's mean and interval, failures, warnings) opens and closes the report, so
the end of a long log (`| tail`) shows it too. Every metric stays in MLflow, the HTML report and
--output; `--verbose` also prints them here.
"""

from __future__ import annotations

import os
import shlex
import sys
import textwrap

from ..judging.figures import answered
from ..judging.pairs import headline
from ..outcome import Outcome
from ..redact import mask
from ..stats import BT_RESAMPLES
from ..types import NOT_APPLICABLE, HumanAgreement, ModelResult, RowResult
from .present import (
    MISSING,
    by_turn_text,
    fmt,
    human_summary,
    judge_summary,
    justification_text,
    number,
    paired,
    score_of,
    shorten,
    turn_label,
    versus,
)

WIDTH = 100
CUT = 120  # characters of an answer or a justification in the compact listing: a sentence or so
# Rows in the compact listing, problems first: a screenful, not a 5,000-row scroll. Every row is
# in the run's report.html, --report, --output and `--rows all`.
COMPACT_ROWS = 20
UNSCORED_SHOWN = 300  # characters of an unparseable judge reply (or an error) shown in the terminal
# The heuristic metrics compared side by side, besides each judge's mean, interval and unscored
# share (ends of the metric keys).
COMPARED = ("/mean", "unscored_ratio", "/ci_low", "/ci_high", "exact_match/v1")
# How far a judge agrees with itself (--judge-repeats) and with other judges (NAME@EP1+EP2).
TRUST = ("self_consistency", "mean_spread", "agreement_kappa", "agreement_alpha")
_ORDER = {"failed": 0, "unscored": 1, "ok": 2}


def _wrap(label: str, text: str | None, indent: int = 4) -> str:
    prefix = " " * indent + f"{label}: "
    return textwrap.fill(
        " ".join((text or "").split()) or MISSING,
        WIDTH,
        initial_indent=prefix,
        subsequent_indent=" " * len(prefix),
    )


def _unscored_cut(text: str) -> str:
    if len(text) <= UNSCORED_SHOWN:
        return text
    return text[:UNSCORED_SHOWN] + " … (full reply in the MLflow run's eval table)"


def _row_lines(result: ModelResult, row: RowResult, cut: bool) -> list[str]:
    """One row: the question, the answer (or FAILED and why), each judge's score and words.

    `cut`: answers and justifications shortened to about `CUT` characters, and a failed answer's
    judges (each "candidate produced no answer") left out.
    """
    question = " ".join(row.sample.input.split())
    turn = f"{label} " if (label := turn_label(row)) else ""  # its conversation and turn
    lines = [f"[{row.index + 1}] {turn}" + (shorten(question, WIDTH) if cut else question)]
    if row.answer.failed:
        lines.append(_wrap("FAILED", _unscored_cut(row.answer.error or "no answer")))
        if cut:
            return lines
    else:
        text = row.answer.text or ""
        lines.append(_wrap("answer", shorten(text, CUT) if cut else text))
    for judge in result.judges:
        score = score_of(row, judge.key)
        text = justification_text(score)
        if not score.scored:
            text = _unscored_cut(text)
        elif cut:
            text = shorten(text, CUT)
        shown = fmt(score.value, 3) if score.scored else "unscored"
        if score.reason == NOT_APPLICABLE:
            shown = "n/a"
        lines.append(_wrap(f"{judge.name} = {shown}", text))
    return lines


def _problem_first(rows: list[RowResult]) -> list[RowResult]:
    """Failed rows (no answer), then unscored ones (a judge could not grade), then the rest."""
    return sorted(rows, key=lambda r: (_ORDER[r.status], r.index))


def _problem(row: RowResult) -> bool:
    return row.status != "ok"


def format_rows(result: ModelResult, listing: str = "all") -> str:
    """The per-row listing: every row in full (`all`), only failed and unscored rows in full
    (`failed`), or failed and unscored rows first, long texts cut, at most `COMPACT_ROWS` rows
    and a line saying how many more there are (`compact`)."""
    rows = result.rows
    if listing != "all":
        rows = _problem_first(rows)
    if listing == "failed":
        rows = [r for r in rows if _problem(r)]
    rest = rows[COMPACT_ROWS:] if listing == "compact" else []
    shown = rows[: len(rows) - len(rest)]
    lines = [line for row in shown for line in _row_lines(result, row, listing == "compact")]
    if rest:
        problems = sum(map(_problem, rest))
        among = f", {problems:,} of them failed or unscored (--rows failed)" if problems else ""
        lines.append(
            f"… {len(rest):,} more rows{among}: --rows all lists them, as do the run's "
            "report.html and --output"
        )
    return "\n".join(lines)


def _rows_heading(result: ModelResult, listing: str, several: bool) -> str:
    failed = sum(r.status == "failed" for r in result.rows)
    unscored = sum(r.status == "unscored" for r in result.rows)
    counts = f"{failed} failed, {unscored} unscored, {len(result.rows) - failed - unscored} ok"
    whose = f" of {result.model.id}" if several else ""
    if listing == "failed":
        return f"Failed and unscored rows{whose} ({counts}; --rows all: every row):"
    if listing == "compact":
        first = f", the first {COMPACT_ROWS}" if len(result.rows) > COMPACT_ROWS else ""
        return f"Rows{whose} ({counts}; problems first{first}, texts cut; --rows all: in full):"
    return f"Per-row results{whose} ({counts}):"


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


def _table(head: list[str], rows: list[list[str]], indent: str = "") -> list[str]:
    """Left-aligned columns, two spaces apart; trailing blanks trimmed."""
    widths = [max(len(x) for x in column) for column in zip(head, *rows)]
    return [
        (indent + "  ".join(c.ljust(w) for c, w in zip(row, widths))).rstrip()
        for row in [head, *rows]
    ]


def format_comparison(results: list[ModelResult]) -> str:
    """A model × metric table of the judges' means and the main heuristics."""
    keys = sorted({k for r in results for k in r.metrics if k.endswith(COMPARED)})
    head = ["metric"] + [r.model.id for r in results]
    rows = [[k] + [fmt(r.metrics.get(k), 3) for r in results] for k in keys]
    return "\n".join(_table(head, rows))


# ---- the headline ----------------------------------------------------------------------------


def _judge_table(result: ModelResult) -> list[str]:
    """Each judge's mean, 95% interval and scored rows; unscored verdicts when any."""
    ratios = {
        j.key: number(result.metrics.get(f"{j.key}/unscored_verdict_ratio")) or 0.0
        for j in result.judges
    }
    extra = any(ratios.values())
    head = ["judge", "mean", "95% interval", "rows scored"]
    head += ["unscored verdict ratio"] if extra else []
    rows = []
    for judge in result.judges:
        s = judge_summary(result, judge.key)
        low, high = s.interval or (None, None)
        name = judge.key + ("" if judge.greater_is_better else " (lower is better)")
        interval = f"[{fmt(low, 3)}, {fmt(high, 3)}]" if s.interval else MISSING
        row = [name, s.mean_text, interval, f"{s.scored} of {s.total}{s.not_applicable_text}"]
        rows.append(row + ([fmt(ratios[judge.key], 3)] if extra else []))
    lines = _table(head, rows, "  ")
    turns = [by_turn_text(result, j.key) for j in result.judges]
    wrapped = [
        textwrap.fill(t, WIDTH, initial_indent="  ", subsequent_indent="    ") for t in turns if t
    ]
    return lines + wrapped


def _failed_line(result: ModelResult) -> str:
    """How many rows failed (no answer after retries), and how many a judge's call failed on
    after retries (unscored by it), per judge."""
    total, failed = len(result.rows), result.failed_rows
    judged = sum(r.judge_failed for r in result.rows)
    if not failed and not judged:
        return f"  failed rows: 0 of {total}"
    line = f"  failed rows: {failed} of {total}"
    if failed:
        line += f" after retries (candidate {failed})"
    if judged:
        whose = {
            judge.key: sum(r.judgements[judge.key].call_failed for r in result.rows
                           if judge.key in r.judgements)
            for judge in result.judges
        }  # fmt: skip
        calls = ", ".join(f"{name} {n}" for name, n in whose.items() if n)
        line += f"; unscored by a judge call that failed after retries: {judged} ({calls})"
    return line + "; re-run the same command to retry only them"


def _trust_lines(result: ModelResult) -> list[str]:
    """Per judge, how far it agrees with itself and with the other judges, when measured."""
    lines = []
    for judge in result.judges:
        values = [(name, number(result.metrics.get(f"{judge.key}/{name}"))) for name in TRUST]
        if shown := [f"{name} {fmt(value, 3)}" for name, value in values if value is not None]:
            lines.append(f"  {judge.key}: {', '.join(shown)}")
    return lines


def _cost_lines(result: ModelResult) -> list[str]:
    """Per judge, the completion tokens its verdicts took and how many the budget cut off: a
    rambling judge costs minutes per run on a local server."""
    lines = []
    for judge in result.judges:
        mean, p90, top = (number(result.metrics.get(f"{judge.key}/verdict_tokens_{a}"))
                          for a in ("mean", "p90", "max"))  # fmt: skip
        calls = [v.call for r in result.rows if judge.key in r.judgements
                 for v in r.judgements[judge.key].verdicts if v.call is not None]  # fmt: skip
        replied = answered(calls)  # the verdicts cut_off_ratio is taken over
        if mean is None or not replied:
            continue
        cut = sum(c.finish_reason == "length" for c in replied)
        lines.append(
            f"  {judge.key} verdicts: {fmt(mean, 3)} tokens (p90 {fmt(p90, 3)}, max "
            f"{fmt(top, 3)}), {cut} of {len(replied)} cut off by the token budget"
        )
    return lines


def format_summary(result: ModelResult, matrices: bool = False) -> str:
    """One model's headline: the judges, failures, speed, people, baseline, warnings.

    `matrices`: also the judge × person counts under each agreement line.
    """
    lines = [f"{result.model.id}:"]
    if result.rows:
        lines += _judge_table(result)
        lines += _trust_lines(result)
        lines.append(_failed_line(result))
        lines += _cost_lines(result)
        speed = number(result.metrics.get("candidate/tokens_per_s"))
        cached = int(number(result.metrics.get("candidate/cached_answers")) or 0)
        from_cache = f"{cached} answer(s) from the cache, timed when first asked"
        if speed is not None:
            lines.append(
                f"  candidate: {fmt(speed, 3)} tokens/s" + (f" ({from_cache})" if cached else "")
            )
        elif cached:
            lines.append(f"  candidate: {from_cache}: no speed measured in this run")
    for key, agreement in result.human.items():
        lines.append(f"  {human_summary(key, agreement)}")
        if matrices:
            lines.append(format_matrix(agreement))
    lines += [f"  {versus(c)}" for c in result.vs_baseline]
    lines += [f"  {key} {MISSING} ({why})" for key, why in sorted(result.undefined.items())]
    lines += [f"  warning: {w}" for w in result.warnings]
    return "\n".join(lines)


def format_head_to_head(outcome: Outcome) -> list[str]:
    """Each pair's sentence, the rows its judge flipped on, and the strengths (3+ versions)."""
    if not outcome.head_to_head:
        return []
    lines = ["Head to head (each row judged in both orders; 95% bootstrap intervals over rows):"]
    for h in outcome.head_to_head:
        lines += textwrap.wrap(headline(h.figures), WIDTH, initial_indent="  ",
                               subsequent_indent="    ", break_on_hyphens=False)  # fmt: skip
        flipped = [str(i + 1) for i, r in enumerate(h.rows) if r.consistent is False]
        if flipped:
            shown = ", ".join(flipped[:12]) + (", ..." if len(flipped) > 12 else "")
            lines.append(f"    the judge's verdict followed the position on row(s) {shown}")
    if outcome.strengths:
        shown = ", ".join(f"{s.version} {s.score:.0f} [{s.ci_low:.0f}, {s.ci_high:.0f}]"
                          for s in outcome.strengths)  # fmt: skip
        lines += textwrap.wrap(
            f"Bradley-Terry strengths (95% intervals, {BT_RESAMPLES} row resamples): {shown}; "
            f"{outcome.separability or 0:.0%} of the pairs are separable",
            WIDTH, initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False,
        )  # fmt: skip
    return lines


def _headline(outcome: Outcome, matrices: bool, notes: bool = True) -> list[str]:
    """Every model's summary, the notes, the paired comparisons and the head to head."""
    parts = [format_summary(r, matrices) for r in outcome.results]
    parts[1:] = [f"\n{p}" for p in parts[1:]]  # a blank line between models
    pairs = format_head_to_head(outcome)
    if (len(parts) > 1 or pairs) and ((notes and outcome.notes) or outcome.comparisons or pairs):
        parts.append("")
    parts += [f"note: {note}" for note in outcome.notes] if notes else []
    if outcome.comparisons:
        parts.append("Paired comparisons (bootstrap over rows, 95% interval):")
        parts += [f"  {paired(c).line}" for c in outcome.comparisons]
    if pairs and ((notes and outcome.notes) or outcome.comparisons):
        parts.append("")
    return parts + pairs


def format_header(outcome: Outcome) -> str:
    """What ran: the data, the model(s) and where they answer, the judges, the MLflow run(s)."""
    data, results = outcome.dataset, outcome.results
    rows = len(data.samples) or max((len(r.rows) for r in results), default=0)
    several = len(results) > 1
    what = f"{len(results)} models" if several else results[0].model.id if results else "nothing"
    talks = {s.turn.conversation for s in data.samples if s.turn is not None}
    size = f"{len(talks)} conversations, {rows} turns" if talks else f"{rows} rows"
    lines = [f"=== {what} on {data.path.name}" + (f" ({size})" if rows else "")]
    cells = [[r.model.id, mask(r.model.base_url)] + ([f"run {r.run_id}"] if several else [])
             for r in results]  # fmt: skip
    labels = ["models  " if several else "model   "] + [" " * 8] * len(cells)
    lines += [a + b for a, b in zip(labels, _table([""] * 3, cells)[1:] if cells else [])]
    judges = [f"{j.key} via {'+'.join(j.endpoints)}" if j.endpoints else j.key
              for j in outcome.judges]  # fmt: skip
    if judges:
        lines.append(textwrap.fill(", ".join(judges), WIDTH, initial_indent="judges  ",
                                   subsequent_indent=" " * 8, break_on_hyphens=False))  # fmt: skip
    run = f"comparison run {outcome.parent_run_id}" if several else f"run {results[0].run_id}"
    lines.append(f"mlflow  {run} in experiment {outcome.experiment_id} (to open it: see the end)")
    return "\n".join(lines)


def format_outcome(outcome: Outcome, rows: str = "compact", verbose: bool = False) -> str:
    """The whole terminal report of a run.

    Args:
        rows: the per-row listing: compact, all, failed or none (see `format_rows`).
        verbose: also every metric of every model, sorted by name.
    """
    # After a listing the summary comes again, so it is on screen at the end; the notes only
    # there (each is a paragraph).
    again = any(r.rows for r in outcome.results) and (rows != "none" or verbose)
    parts = [format_header(outcome), "", *_headline(outcome, matrices=True, notes=not again)]
    if len(outcome.results) > 1:
        parts.append("\nComparison (model × metric):\n" + format_comparison(outcome.results))
    for result in outcome.results:
        if result.rows and rows != "none":
            listing = format_rows(result, rows)
            parts.append(f"\n{_rows_heading(result, rows, len(outcome.results) > 1)}")
            parts.append(listing or "  (none)")
        if verbose and (result.metrics or result.undefined):
            parts.append(
                f"\nAggregated metrics of {result.model.id}:\n"
                + format_metrics(result.metrics, result.undefined)
            )
    if again:
        parts += ["", "=== Summary", *_headline(outcome, matrices=False)]
    parts.append("\n" + format_ui_hint(outcome.tracking_uri, outcome.experiment_id))
    return "\n".join(parts)


def format_ui_hint(tracking_uri: str, experiment_id: str) -> str:
    """How to open the experiment: a tracking server's own page, else a command that works as
    printed (`mlflow` is in the virtualenv, not on the PATH)."""
    if tracking_uri.startswith(("http://", "https://")):
        page = f"{mask(tracking_uri).rstrip('/')}/#/experiments/{experiment_id}"
        return f"Open the results in the MLflow UI: {page}"
    if os.environ.get("PIPENV_ACTIVE") == "1":  # started with `pipenv run`
        command = "pipenv run mlflow ui"
    else:
        command = f"{shlex.quote(sys.executable)} -m mlflow ui"
    store = mask(tracking_uri)
    masked = " (password masked: put yours back)" if store != tracking_uri else ""
    return (
        f"Open the results in the MLflow UI{masked}:\n  {command} --backend-store-uri "
        f"{shlex.quote(store)} --port 5000\n  then http://127.0.0.1:5000/#/experiments/"
        f"{experiment_id}"
    )
