"""The HTML report: one self-contained page per evaluation, or per comparison of several models.

The page fetches nothing: CSS and JS are inline, charts are inline SVG, and its
Content-Security-Policy allows only its own script (by hash) and no network at all. The page is a
Jinja2 template with autoescape on, so every string from a model, a judge or the dataset is text:
an answer holding `<script>` shows as `<script>`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from ..errors import EvalError
from ..judging.pairs import HeadToHead, headline
from ..outcome import Outcome
from ..redact import mask
from ..types import NOT_APPLICABLE, Comparison, HumanAgreement, JudgeInfo, ModelResult, RowResult
from . import charts, present

_STATIC = files(__package__) / "static"
STYLE = (_STATIC / "report.css").read_text(encoding="utf-8")
SCRIPT = (_STATIC / "report.js").read_text(encoding="utf-8")
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
# No default source at all: the page cannot fetch anything, and only the script above can run.
CSP = (
    f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'; style-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)

_ENV = Environment(
    loader=PackageLoader(__package__, "templates"),
    autoescape=True,
    undefined=StrictUndefined,  # a misspelt name in the template fails here, not silently blank
    trim_blocks=True,
    lstrip_blocks=True,
)


def breakable(text: str) -> Markup:
    """Text that may wrap after `/` and `_` (a judge's key in a table header), escaped: a
    `<wbr>` there, so the header's column need not be as wide as the whole key."""
    return Markup("<wbr>").join(re.split(r"(?<=[/_])(?=.)", text))


_ENV.filters.update(
    fmt=present.fmt, interval=present.interval_text, zip=zip, mask=mask, breakable=breakable
)


@dataclass(frozen=True)
class Cell:
    """One `<td>` of the per-row table: its class, its sort key (`data-v`) and its content."""

    css: str
    sort: str
    text: str = ""
    badge: str | None = None  # a status badge before the text: ok, unscored, failed
    reasons: tuple[str, ...] = ()  # muted lines under the badge
    error: str | None = None  # a failed row's answer, shown as `FAILED: <error>`


@dataclass(frozen=True)
class RowView:
    """One `<tr>`: the row's status and model (for the filters) and its cells."""

    status: str
    model: str | None
    cells: list[Cell]


def _number(value: float | int | None, digits: int = 4) -> Cell:
    n = present.number(value)
    return Cell("num", "" if n is None else repr(n), "" if n is None else present.fmt(n, digits))


def _text(value: str | None, css: str = "text") -> Cell:
    return Cell(css, (value or "").lower(), value or "")


def _judges(results: Sequence[ModelResult]) -> list[JudgeInfo]:
    """Every model's judges, each once, in order."""
    seen: dict[str, JudgeInfo] = {}
    for result in results:
        for judge in result.judges:
            seen.setdefault(judge.key, judge)
    return list(seen.values())


def _row_view(
    model: str | None, row: RowResult, judges: list[JudgeInfo], columns: list[str]
) -> RowView:
    """One row's cells, in the header's order; the sort keys are the values, not their text."""
    status, reasons = present.row_status(row)
    cells = [_number(row.index + 1)]
    if model is not None:
        cells.append(_text(model, "tag"))
    if "conversation" in columns:
        cells.append(_text(present.turn_label(row), "tag"))
    cells.append(Cell("tag", status, badge=status, reasons=tuple(reasons)))
    cells.append(_text(row.sample.input))
    optional = {"ground_truth": row.sample.target, "context": row.sample.context}
    cells += [_text(optional[c]) for c in columns if c != "conversation"]
    if row.answer.failed:
        cells.append(Cell("text", "", error=row.answer.error))
    else:
        cells.append(_text(row.answer.text))
    for judge in judges:
        score = present.score_of(row, judge.key)
        if score.scored:
            cells.append(_number(score.value))
        elif score.reason == NOT_APPLICABLE:
            cells.append(Cell("num", "", badge="n/a", reasons=("not applicable",)))
        else:
            cells.append(Cell("num", "", badge="unscored", reasons=(str(score.reason),)))
        cells.append(_text(score.justification))
    call = row.answer.call
    if call is None:  # no call was made: blank, never zero
        cells += [_number(None)] * 3
    else:
        cells.append(_number(call.latency_s, 3))
        cells.append(_number(call.prompt_tokens, 10))
        cells.append(_number(call.completion_tokens, 10))
    cached = present.cached_text(call)
    cells.append(Cell("flag", cached, cached))
    return RowView(status, model, cells)


def _rows_section(results: Sequence[ModelResult], judges: list[JudgeInfo]) -> dict[str, Any]:
    """The per-row table (every model's rows when several) and its filters' options."""
    several = len(results) > 1
    rows = [row for r in results for row in r.rows]
    optional = [("ground_truth", "ground truth", any(r.sample.target for r in rows))]
    optional.append(("context", "context", any(r.sample.context for r in rows)))
    columns = [column for column, _, shown in optional if shown]
    # Conversations: a column naming each row's conversation and turn (its turns are adjacent).
    turns = any(r.sample.turn is not None for r in rows)
    columns += ["conversation"] if turns else []
    head = [("#", "num")] + ([("model", "text")] if several else [])
    head += [("conversation", "text")] if turns else []
    head += [("status", "text"), ("input", "text")]
    head += [(label, "text") for _, label, shown in optional if shown]
    head.append(("answer", "text"))
    for judge in judges:
        head += [(f"{judge.key} score", "num"), (f"{judge.key} justification", "text")]
    head += [("latency s", "num"), ("prompt tokens", "num"), ("completion tokens", "num")]
    head.append(("cached", "text"))
    views = [
        _row_view(r.model.id if several else None, row, judges, columns)
        for r in results
        for row in r.rows
    ]
    counts = Counter(v.status for v in views)
    return {
        "head": head,
        "rows": views,
        "statuses": [(s, counts[s]) for s in present.STATUSES],
        "models": [r.model.id for r in results] if several else [],
    }


def _comparison_section(
    results: Sequence[ModelResult], judges: list[JudgeInfo], comparisons: Sequence[Comparison]
) -> dict[str, Any]:
    """A bar chart of each judge's mean per model, and the paired comparisons' table."""
    figures = []
    for judge in judges:
        items = []
        for r in results:
            summary = present.judge_summary(r, judge.key)
            items.append((r.model.id, summary.mean, summary.interval))
        caption = f"{judge.key} mean by model (whiskers: 95% interval)"
        figures.append((caption, charts.comparison(f"{judge.key} mean by model", items)))
    return {"figures": figures, "paired": [present.paired(c) for c in comparisons]}


def _histograms(results: Sequence[ModelResult]) -> list[tuple[str, charts.Chart | None]]:
    """A score histogram per model and judge, in the model's colour."""
    figures = []
    for i, r in enumerate(results):
        color = charts.PALETTE[i % len(charts.PALETTE)]
        for judge in r.judges:
            title = f"{judge.key} scores" + (f" — {r.model.id}" if len(results) > 1 else "")
            scale = (judge.low, judge.high)
            figures.append((title, charts.histogram(title, r.scores(judge.key), color, scale)))
    return figures


def _metrics_table(results: Sequence[ModelResult]) -> list[tuple[str, list[tuple]]]:
    """(metric, [(value, interval) per model]) rows of the all-metrics table, sorted by metric."""
    per_model = [{n: (v, ci) for n, v, ci in present.summary_rows(r.metrics)} for r in results]
    names = sorted({name for rows in per_model for name in rows})
    return [(name, [rows.get(name, (None, None)) for rows in per_model]) for name in names]


def _differ_rows(result: ModelResult, agreement: HumanAgreement) -> list[tuple[Any, ...]]:
    """(row number, question, answer, judge, person) where judge and person differ most."""
    out = []
    for index, judge, person in agreement.differ:
        row = result.rows[index] if index < len(result.rows) else None
        question = row.sample.input if row else ""
        answer = (row.answer.text or row.answer.error or "") if row else ""
        out.append((index + 1, question, answer, present.fmt(judge, 3), present.fmt(person, 3)))
    return out


def _share(value: float, ci: tuple[float, float] | None = None) -> str:
    if value != value:
        return "—"
    return f"{value:.0%}" + (f" [{ci[0]:.0%}, {ci[1]:.0%}]" if ci else "")


def _said(h: HeadToHead, winner: str, explanation: str | None) -> str:
    """One order's verdict as a version's name, with the judge's explanation."""
    name = {"a": h.a, "b": h.b, "tie": "tie"}[winner]
    return name + (f": {explanation}" if explanation else "")


def _pairs_section(pairs: Sequence[HeadToHead], questions: Sequence[str]) -> list[dict[str, Any]]:
    """Per pair of versions: its sentence, bar, figures and the rows its judge flipped on."""
    out = []
    for h in pairs:
        f = h.figures
        figures = [
            (f"win rate of {h.b}", _share(f.win_rate, (f.ci_low, f.ci_high))),
            ("position consistency", _share(f.consistency, f.consistency_ci)),
            ("first-position rate", _share(f.first_position_rate)),
            ("length-controlled win rate", _share(f.lc_win_rate)),
            ("length coefficient (log-odds per SD)", present.fmt(f.length_coef, 3)),
            ("unscored rows", str(f.unscored)),
        ]
        if f.human is not None:
            hf = f.human
            figures += [
                (f"agreement with people, with ties ({hf.rows} rows)",
                 _share(hf.with_ties, hf.with_ties_ci)),
                (f"agreement with people, without ties ({hf.decided} rows)",
                 _share(hf.without_ties, hf.without_ties_ci)),
            ]  # fmt: skip
        flipped = []
        for i, r in enumerate(h.rows):
            if r.consistent is False and i < len(h.answers):
                one, two = r.winners()
                question = questions[i] if i < len(questions) else ""
                flipped.append((i + 1, question, *h.answers[i],
                                _said(h, one, r.a_first.explanation),
                                _said(h, two, r.b_first.explanation)))  # fmt: skip
        parts = [(f"{h.b} wins", f.wins), ("ties", f.ties), (f"{h.b} loses", f.losses),
                 ("unscored", f.unscored)]  # fmt: skip
        out.append({
            "pair": h, "headline": headline(f), "figures": figures, "flipped": flipped,
            "bar": charts.win_bar(f"{h.b} vs {h.a}", parts),
        })  # fmt: skip
    return out


def render_html(
    results: Sequence[ModelResult],
    *,
    title: str | None = None,
    dataset: str | None = None,
    comparisons: Sequence[Comparison] = (),
    notes: Iterable[str] = (),
    generated: datetime | None = None,
    head_to_head: Sequence[HeadToHead] = (),
    questions: Sequence[str] = (),
) -> str:
    """The whole page for one model's run, or a comparison of several (one section each)."""
    generated = generated or datetime.now(UTC)
    if title is None:
        ids = ", ".join(r.model.id for r in results)
        title = f"Evaluation of {ids}" if len(results) == 1 else f"Comparison of {ids}"
    judges = _judges(results)
    several = len(results) > 1
    page = _ENV.get_template("report.html.j2")
    return page.render(
        title=title,
        generated=generated.strftime("%Y-%m-%d %H:%M:%S %Z"),
        dataset=dataset,
        results=results,
        notes=list(notes),
        # Our own text, inlined as it is: the policy's quotes stay readable in the source, and the
        # policy hashes the script's exact text.
        csp=Markup(CSP),
        style=Markup(STYLE),
        script=Markup(SCRIPT),
        comparison=_comparison_section(results, judges, comparisons) if several else None,
        summaries=[(r, [present.judge_summary(r, j.key) for j in r.judges]) for r in results],
        baseline=[
            (r, [present.paired(c) for c in r.vs_baseline]) for r in results if r.vs_baseline
        ],
        human=[
            (r, key, present.human_summary(key, a), a, _differ_rows(r, a))
            for r in results
            for key, a in r.human.items()
        ],
        warnings=[w for r in results for w in r.warnings],
        undefined=[(k, why) for r in results for k, why in sorted(r.undefined.items())],
        metrics=_metrics_table(results),
        histograms=_histograms(results),
        table=_rows_section(results, judges),
        pairs=_pairs_section(head_to_head, questions),
    )


def render_outcome(outcome: Outcome) -> str:
    """The report of a whole invocation: one model's, or the comparison of all of them."""
    return render_html(
        outcome.results,
        dataset=outcome.dataset.name,
        comparisons=outcome.comparisons,
        notes=outcome.notes,
        head_to_head=outcome.head_to_head,
        questions=[s.input for s in outcome.dataset.samples],
    )


def write_report(outcome: Outcome, path: Path) -> Path:
    """Write the report to `path` (creating its folder)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_outcome(outcome), encoding="utf-8")
    except OSError as exc:
        raise EvalError(
            f"Could not write the HTML report to {path}: {exc}. The run itself was logged; the "
            "same report is an artifact of it (report.html)."
        ) from None
    return path
