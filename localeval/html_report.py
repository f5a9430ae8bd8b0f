"""The HTML report: one self-contained page per evaluation, or per comparison of several models.

The page fetches nothing: CSS and JS are inline, charts are inline SVG, and its
Content-Security-Policy allows only its own script (by hash) and no network at all. Every string
that comes from a model, a judge or the dataset goes through `html.escape`, so an answer holding
`<script>` shows as text.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EvalError

if TYPE_CHECKING:
    from .runner import Comparison, ModelResult, Outcome

UNSCORED_PREFIX = "[unscored: "
HISTOGRAM_MAX_BARS = 12  # up to this many distinct scores get a bar each, else equal-width bins
# MLflow's genai judges grade 1-5: integer scores inside that range get all five bars, so an empty
# grade shows as an empty bar rather than disappearing from the axis.
JUDGE_SCALE = (1, 5)
PALETTE = ("#2f6db5", "#d9822b", "#3a9a5b", "#b5405a", "#7a5cb8", "#8a6d3b", "#3b8a8a")

STYLE = """
:root { --fg: #1d2330; --muted: #5d6778; --line: #d9dee7; --bg: #f6f7f9; --accent: #2f6db5;
  --bad: #b3261e; --warn: #9a6700; --ok: #2e7d32; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; color: var(--fg); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 32px 0 10px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 16px 0 6px; }
.meta { color: var(--muted); margin: 0 0 2px; }
.meta code { font-size: 12px; }
.notes { color: var(--muted); margin: 8px 0 0; padding-left: 18px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; min-width: 190px;
  background: var(--bg); }
.card .name { color: var(--muted); font-size: 12px; }
.card .value { font-size: 24px; font-weight: 600; }
.card .ci, .card .sub { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; }
.metrics td, .metrics th { padding: 3px 12px 3px 0; text-align: left; vertical-align: top; }
.metrics td.num, .metrics th.num { text-align: right; font-variant-numeric: tabular-nums; }
.metrics tr + tr td { border-top: 1px solid #eef0f4; }
.charts { display: flex; flex-wrap: wrap; gap: 18px; }
figure { margin: 0; }
figcaption { font-size: 12px; color: var(--muted); margin-bottom: 2px; }
svg text { font: 11px system-ui, sans-serif; fill: var(--fg); }
svg .axis { stroke: #9aa3b2; stroke-width: 1; }
svg .grid { stroke: #eceff4; stroke-width: 1; }
.controls { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin: 8px 0; }
.controls input { width: 280px; padding: 4px 8px; font: inherit; }
.controls select { padding: 3px 6px; font: inherit; }
#shown { color: var(--muted); }
.rows-wrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
#rows { width: 100%; font-size: 13px; }
#rows th { position: sticky; top: 0; background: #eef1f6; text-align: left; white-space: nowrap;
  padding: 0; border-bottom: 1px solid var(--line); }
#rows th button { all: unset; cursor: pointer; display: block; padding: 6px 8px; }
#rows th button:focus-visible { outline: 2px solid var(--accent); }
#rows th[aria-sort=ascending] button::after { content: " \\25B2"; font-size: 10px; }
#rows th[aria-sort=descending] button::after { content: " \\25BC"; font-size: 10px; }
#rows td { padding: 6px 8px; vertical-align: top; border-top: 1px solid #eef0f4;
  white-space: pre-wrap; overflow-wrap: anywhere; }
#rows td.text { min-width: 200px; max-width: 440px; }
#rows td.tag { min-width: 90px; max-width: 200px; white-space: normal; }
#rows td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
#rows tr.failed { background: #fdf1f0; }
#rows tr.unscored { background: #fff8e6; }
.badge { display: inline-block; padding: 0 6px; border-radius: 9px; font-size: 11px;
  font-weight: 600; white-space: nowrap; }
.badge.ok { background: #e4f3e5; color: var(--ok); }
.badge.failed { background: #fbe0de; color: var(--bad); }
.badge.unscored { background: #fdf0c8; color: var(--warn); }
.reason { display: block; color: var(--muted); font-size: 11px; white-space: normal; }
.error { color: var(--bad); }
.empty { color: var(--muted); }
"""

# Sorting and filtering of the per-row table. It reads only the DOM the server escaped; it never
# parses data into HTML (textContent and dataset only), so it cannot reintroduce markup.
SCRIPT = """
(function () {
  "use strict";
  var table = document.getElementById("rows");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var query = document.getElementById("filter-text");
  var status = document.getElementById("filter-status");
  var model = document.getElementById("filter-model");
  var shown = document.getElementById("shown");
  function apply() {
    var text = query.value.trim().toLowerCase();
    var count = 0;
    rows.forEach(function (row) {
      var keep = (!text || row.textContent.toLowerCase().indexOf(text) !== -1) &&
        (!status.value || row.dataset.status === status.value) &&
        (!model || !model.value || row.dataset.model === model.value);
      row.hidden = !keep;
      if (keep) { count += 1; }
    });
    shown.textContent = count + " of " + rows.length + " rows";
  }
  function sortBy(th) {
    var index = th.cellIndex;
    var numeric = th.dataset.kind === "num";
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      cell.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    rows.sort(function (a, b) {
      var x = a.cells[index].dataset.v, y = b.cells[index].dataset.v;
      if (x === y) { return 0; }
      if (x === "") { return 1; }  // blanks last, either way
      if (y === "") { return -1; }
      return dir * (numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y));
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    th.querySelector("button").addEventListener("click", function () { sortBy(th); });
  });
  [query, status, model].forEach(function (control) {
    if (control) {
      control.addEventListener("input", apply);
      control.addEventListener("change", apply);
    }
  });
  apply();
})();
"""

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
# No default source at all: the page cannot fetch anything, and only the script above can run.
CSP = (
    f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'; style-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN
    except (TypeError, ValueError):  # pandas.NA refuses bool()
        return True


def _number(value: Any) -> float | None:
    if _missing(value) or isinstance(value, str):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _fmt(value: Any, digits: int = 4) -> str:
    number = _number(value)
    if number is None:
        return "—"
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.{digits}g}"


def judge_names(table: Any) -> list[str]:
    """The judges in an eval table: `<name>/<version>` for each score + justification pair."""
    return [
        c.removesuffix("/score")
        for c in table.columns
        if c.endswith("/score") and f"{c.removesuffix('/score')}/justification" in table.columns
    ]


def split_unscored(justification: Any) -> tuple[str | None, str]:
    """`[unscored: reason] text` -> (reason, text); a scored row's text -> (None, text)."""
    text = "" if _missing(justification) else str(justification)
    if text.startswith(UNSCORED_PREFIX) and "]" in text:
        reason, _, rest = text[len(UNSCORED_PREFIX) :].partition("]")
        return reason.strip(), rest.strip()
    return None, text


def _intervals(metrics: dict[str, float]) -> dict[str, tuple[float, float]]:
    """`<metric>/ci_low` + `<metric>/ci_high` -> {<metric>: (low, high)}."""
    out = {}
    for key, low in metrics.items():
        if key.endswith("/ci_low"):
            base = key.removesuffix("/ci_low")
            high = metrics.get(f"{base}/ci_high")
            if _number(low) is not None and _number(high) is not None:
                out[base] = (float(low), float(high))
    return out


def summary_rows(metrics: dict[str, float]) -> list[tuple[str, float | None, tuple | None]]:
    """(metric, value, interval) per metric, sorted. An interval joins its `<metric>/mean` (else
    `<metric>`) instead of showing ci_low and ci_high as rows of their own."""
    intervals = _intervals(metrics)
    attached: dict[str, tuple[float, float]] = {}
    for base, interval in intervals.items():
        if f"{base}/mean" in metrics:
            attached[f"{base}/mean"] = interval
        elif base in metrics:
            attached[base] = interval
        else:
            attached[f"{base} (interval)"] = interval
    rows = [
        (key, _number(value), attached.get(key))
        for key, value in metrics.items()
        if not (key.endswith(("/ci_low", "/ci_high")) and key.rpartition("/")[0] in intervals)
    ]
    rows += [(key, None, interval) for key, interval in attached.items() if key not in metrics]
    return sorted(rows, key=lambda row: row[0])


def _interval_text(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f"[{_fmt(interval[0])}, {_fmt(interval[1])}]"


# ---------------------------------------------------------------------------------------------
# Charts (inline SVG)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def histogram_bins(values: Sequence[float | None]) -> list[tuple[str, int, bool]]:
    """(label, count, is_unscored) bars: one per score when there are few distinct ones (integer
    scores get every step between their lowest and highest, at least 1-5 for scores inside it),
    else ten equal-width bins; unscored rows get a bar of their own."""
    scored = [float(v) for v in values if _number(v) is not None]
    unscored = len(values) - len(scored)
    bars: list[tuple[str, int, bool]] = []
    if scored:
        counts = Counter(scored)
        lo, hi = min(scored), max(scored)
        if all(v.is_integer() for v in scored) and hi - lo < HISTOGRAM_MAX_BARS:
            if JUDGE_SCALE[0] <= lo and hi <= JUDGE_SCALE[1]:
                lo, hi = JUDGE_SCALE
            keys = [float(k) for k in range(int(lo), int(hi) + 1)]
        elif len(counts) <= HISTOGRAM_MAX_BARS:
            keys = sorted(counts)
        else:
            keys = []
        if keys:
            bars = [(_fmt(k), counts.get(k, 0), False) for k in keys]
        else:
            width = (hi - lo) / 10
            edges = [lo + i * width for i in range(11)]
            binned = Counter(min(int((v - lo) / width), 9) for v in scored)
            bars = [
                (f"{_fmt(edges[i], 3)}–{_fmt(edges[i + 1], 3)}", binned[i], False)
                for i in range(10)
            ]
    if unscored:
        bars.append(("unscored", unscored, True))
    return bars


def histogram_svg(title: str, values: Sequence[float | None], color: str = PALETTE[0]) -> str:
    """A bar chart of how many rows got each score (and how many were left unscored)."""
    bars = histogram_bins(values)
    if not bars:
        return f'<p class="empty">{_e(title)}: no rows.</p>'
    bar_w, gap, left, top, plot_h, bottom = 34, 8, 34, 14, 120, 34
    width = left + len(bars) * (bar_w + gap) + gap
    height = top + plot_h + bottom
    peak = max(count for _, count, _ in bars) or 1
    parts = [
        f'<svg class="histogram" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width}" y2="{top + plot_h}"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    for i, (label, count, is_unscored) in enumerate(bars):
        x = left + gap + i * (bar_w + gap)
        h = plot_h * count / peak
        fill = "#c9ced8" if is_unscored else color
        parts.append(
            f'<rect class="bar" x="{x}" y="{top + plot_h - h:.1f}" width="{bar_w}" '
            f'height="{h:.1f}" fill="{fill}"><title>{_e(label)}: {count} row(s)</title></rect>'
        )
        if count:
            parts.append(
                f'<text x="{x + bar_w / 2}" y="{top + plot_h - h - 3:.1f}" '
                f'text-anchor="middle">{count}</text>'
            )
        short = "n/a" if is_unscored else label
        parts.append(
            f'<text x="{x + bar_w / 2}" y="{top + plot_h + 14}" text-anchor="middle">'
            f"{_e(short)}</text>"
        )
    parts.append(
        f'<text x="{left + (width - left) / 2}" y="{height - 4}" text-anchor="middle" '
        f'fill="#5d6778">score (n/a: unscored)</text></svg>'
    )
    return "".join(parts)


def comparison_svg(
    title: str, items: Sequence[tuple[str, float | None, tuple[float, float] | None]]
) -> str:
    """Horizontal bars, one per model: the metric's value with its interval as a whisker."""
    label_w, bar_h, gap, top, plot_w, right = 170, 18, 10, 8, 320, 60
    height = top + len(items) * (bar_h + gap) + 24
    width = label_w + plot_w + right
    highs = [v for _, v, ci in items for v in ([v] + list(ci or ())) if v is not None]
    lows = [v for _, v, ci in items for v in ([v] + list(ci or ())) if v is not None]
    scale_max = _nice_max(max(highs, default=1.0))
    scale_min = min(0.0, min(lows, default=0.0))
    span = (scale_max - scale_min) or 1.0

    def x(value: float) -> float:
        return label_w + plot_w * (value - scale_min) / span

    parts = [
        f'<svg class="comparison" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
    ]
    for tick in range(5):
        value = scale_min + span * tick / 4
        parts.append(
            f'<line class="grid" x1="{x(value):.1f}" y1="{top}" x2="{x(value):.1f}" '
            f'y2="{height - 20}"/><text x="{x(value):.1f}" y="{height - 6}" '
            f'text-anchor="middle">{_fmt(value, 3)}</text>'
        )
    for i, (label, value, interval) in enumerate(items):
        y = top + i * (bar_h + gap)
        color = PALETTE[i % len(PALETTE)]
        short = label if len(label) <= 26 else label[:25] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + bar_h - 5}" text-anchor="end">{_e(short)}'
            f"<title>{_e(label)}</title></text>"
        )
        if value is None:
            parts.append(f'<text x="{label_w + 4}" y="{y + bar_h - 5}">no score</text>')
            continue
        parts.append(
            f'<rect class="bar" x="{x(min(0.0, value)):.1f}" y="{y}" '
            f'width="{abs(x(value) - x(0.0)):.1f}" height="{bar_h}" fill="{color}">'
            f"<title>{_e(label)}: {_fmt(value)} {_interval_text(interval)}</title></rect>"
        )
        end = x(value)
        if interval is not None:
            lo, hi, mid = x(interval[0]), x(interval[1]), y + bar_h / 2
            parts.append(
                f'<path class="ci" d="M{lo:.1f},{mid - 5}v10M{lo:.1f},{mid}H{hi:.1f}'
                f'M{hi:.1f},{mid - 5}v10" stroke="#1d2330" stroke-width="1.5" fill="none"/>'
            )
            end = max(end, hi)
        parts.append(f'<text x="{end + 6:.1f}" y="{y + bar_h - 5}">{_fmt(value, 3)}</text>')
    parts.append(
        f'<line class="axis" x1="{x(0.0):.1f}" y1="{top}" x2="{x(0.0):.1f}" '
        f'y2="{height - 20}"/></svg>'
    )
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# Sections


def _status(row: Any, judges: list[str]) -> tuple[str, list[str]]:
    """'failed', 'unscored' or 'ok', with the reasons."""
    error = row.get("candidate_error")
    if not _missing(error) and str(error):
        return "failed", [str(error)]
    reasons = []
    for judge in judges:
        if _number(row.get(f"{judge}/score")) is None:
            reason, _ = split_unscored(row.get(f"{judge}/justification"))
            reasons.append(f"{judge.split('/')[0]}: {reason or 'no score'}")
    return ("unscored", reasons) if reasons else ("ok", [])


def _cell(content: str, sort_value: Any, kind: str, css: str | None = None) -> str:
    if kind == "num":
        number = _number(sort_value)
        key = "" if number is None else repr(number)
    else:
        key = "" if _missing(sort_value) else str(sort_value).lower()
    return f'<td class="{css or kind}" data-v="{_e(key)}">{content}</td>'


def _text(value: Any) -> str:
    return "" if _missing(value) else _e(value)


def _row(
    model_id: str | None, index: int, row: dict, judges: list[str], columns: list[str], cached: bool
) -> str:
    """One `<tr>`: every value escaped, with its sort key in `data-v`."""
    status, reasons = _status(row, judges)
    cells = [_cell(str(index + 1), index + 1, "num")]
    if model_id is not None:
        cells.append(_cell(_e(model_id), model_id, "text", "tag"))
    reason_html = "".join(f'<span class="reason">{_e(r)}</span>' for r in reasons)
    cells.append(
        _cell(f'<span class="badge {status}">{status}</span>{reason_html}', status, "text", "tag")
    )
    for column in ["inputs", *columns]:
        cells.append(_cell(_text(row.get(column)), row.get(column), "text"))
    if status == "failed":
        error = _e(row.get("candidate_error"))
        cells.append(_cell(f'<span class="error">FAILED: {error}</span>', "", "text"))
    else:
        cells.append(_cell(_text(row.get("answer")), row.get("answer"), "text"))
    for judge in judges:
        score = row.get(f"{judge}/score")
        reason, text = split_unscored(row.get(f"{judge}/justification"))
        shown = _fmt(score)
        if _number(score) is None:
            shown = (
                '<span class="badge unscored">unscored</span>'
                f'<span class="reason">{_e(reason or "no score")}</span>'
            )
        cells += [_cell(shown, score, "num"), _cell(_e(text), text, "text")]
    for column, digits in (("latency_s", 3), ("prompt_tokens", 10), ("completion_tokens", 10)):
        value = row.get(column)
        cells.append(_cell("" if _number(value) is None else _fmt(value, digits), value, "num"))
    if cached:
        value = row.get("cached")
        shown = "" if _missing(value) else ("yes" if bool(value) else "no")
        cells.append(_cell(shown, shown, "text"))
    model_attr = "" if model_id is None else f' data-model="{_e(model_id)}"'
    return f'<tr class="{status}" data-status="{status}"{model_attr}>{"".join(cells)}</tr>'


def _rows_section(results: Sequence[ModelResult]) -> str:
    """The per-row table (every model's rows when several) with its sort and filter controls."""
    several = len(results) > 1
    judges: list[str] = []
    for r in results:
        judges += [j for j in judge_names(r.table) if j not in judges]
    optional = [("ground_truth", "ground truth"), ("context", "context")]
    columns = [c for c, _ in optional if any(c in r.table.columns for r in results)]
    head = [("#", "num")] + ([("model", "text")] if several else [])
    head += [("status", "text"), ("input", "text")]
    head += [(label, "text") for c, label in optional if c in columns]
    head.append(("answer", "text"))
    for judge in judges:
        head += [(f"{judge} score", "num"), (f"{judge} justification", "text")]
    head += [("latency s", "num"), ("prompt tokens", "num"), ("completion tokens", "num")]
    cached = any("cached" in r.table.columns for r in results)  # MLflow may drop the column
    head += [("cached", "text")] if cached else []
    body = []
    counts: Counter[str] = Counter()
    for r in results:
        for index, row in enumerate(r.table.to_dict("records")):
            counts[_status(row, judges)[0]] += 1
            body.append(_row(r.model.id if several else None, index, row, judges, columns, cached))
    header = "".join(
        f'<th data-kind="{kind}" scope="col"><button type="button">{_e(label)}</button></th>'
        for label, kind in head
    )
    status_options = "".join(
        f'<option value="{s}">{s} ({counts[s]})</option>' for s in ("ok", "unscored", "failed")
    )
    model_filter = ""
    if several:
        options = "".join(
            f'<option value="{_e(r.model.id)}">{_e(r.model.id)}</option>' for r in results
        )
        model_filter = (
            '<label>model <select id="filter-model"><option value="">all</option>'
            f"{options}</select></label>"
        )
    return (
        '<section id="per-row"><h2>Per-row results</h2>'
        '<p class="meta">Click a column header to sort; type to filter on any text.</p>'
        '<div class="controls"><input id="filter-text" type="search" '
        'placeholder="filter rows (any text)" aria-label="filter rows">'
        '<label>status <select id="filter-status"><option value="">all</option>'
        f"{status_options}</select></label>{model_filter}"
        f'<span id="shown">{sum(counts.values())} rows</span></div>'
        f'<div class="rows-wrap"><table id="rows"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div></section>"
    )


def _judge_cards(result: ModelResult) -> str:
    intervals = _intervals(result.metrics)
    cards = []
    for judge in judge_names(result.table):
        scores = result.table[f"{judge}/score"].tolist()
        scored = sum(1 for v in scores if _number(v) is not None)
        mean = result.metrics.get(f"{judge}/mean")
        unscored = result.metrics.get(f"{judge}/unscored_ratio")
        interval = intervals.get(judge) or intervals.get(f"{judge}/mean")
        ci = f"95% interval {_interval_text(interval)}" if interval else "no interval"
        cards.append(
            f'<div class="card judge"><div class="name">{_e(judge)} mean</div>'
            f'<div class="value">{_fmt(mean, 3)}</div><div class="ci">{ci}</div>'
            f'<div class="sub">{scored} of {len(scores)} rows scored'
            f"{'' if unscored is None else f', unscored ratio {_fmt(unscored, 3)}'}</div></div>"
        )
    cards.append(
        f'<div class="card"><div class="name">failed rows</div>'
        f'<div class="value">{result.failed_rows}</div>'
        f'<div class="sub">of {len(result.table)} rows</div></div>'
    )
    return f'<div class="cards">{"".join(cards)}</div>'


def _metrics_table(results: Sequence[ModelResult]) -> str:
    per_model = [{name: (v, ci) for name, v, ci in summary_rows(r.metrics)} for r in results]
    names = sorted({name for rows in per_model for name in rows})
    head = "".join(f'<th class="num">{_e(r.model.id)}</th>' for r in results)
    body = []
    for name in names:
        cells = []
        for rows in per_model:
            value, interval = rows.get(name, (None, None))
            ci = f' <span class="meta">{_interval_text(interval)}</span>' if interval else ""
            cells.append(f'<td class="num">{_fmt(value)}{ci}</td>')
        body.append(f"<tr><td>{_e(name)}</td>{''.join(cells)}</tr>")
    return (
        '<table class="metrics"><thead><tr><th>metric</th>'
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _comparison_section(results: Sequence[ModelResult], comparisons: Sequence[Comparison]) -> str:
    judges: list[str] = []
    for r in results:
        judges += [j for j in judge_names(r.table) if j not in judges]
    charts = []
    for judge in judges:
        items = []
        for r in results:
            intervals = _intervals(r.metrics)
            interval = intervals.get(judge) or intervals.get(f"{judge}/mean")
            items.append((r.model.id, _number(r.metrics.get(f"{judge}/mean")), interval))
        charts.append(
            f"<figure><figcaption>{_e(judge)} mean by model (whiskers: 95% interval)"
            f"</figcaption>{comparison_svg(f'{judge} mean by model', items)}</figure>"
        )
    paired = ""
    if comparisons:
        rows = []
        for c in comparisons:
            r = c.result
            verdict = (
                "better" if r.ci_low > 0 else "worse" if r.ci_high < 0 else "not distinguishable"
            )
            rows.append(
                f"<tr><td>{_e(c.b)} vs {_e(c.a)}</td><td>{_e(c.metric.removesuffix('/score'))}"
                f'</td><td class="num">{r.mean_diff:+.3g}</td><td class="num">'
                f'[{r.ci_low:+.3g}, {r.ci_high:+.3g}]</td><td class="num">{r.n_pairs}</td>'
                f'<td class="num">{r.p_b_better:.2f}</td><td>{verdict}</td></tr>'
            )
        paired = (
            "<h3>Paired comparison against the first model (bootstrap over rows)</h3>"
            '<table class="metrics"><thead><tr><th>models</th><th>judge</th>'
            '<th class="num">mean difference</th><th class="num">95% interval</th>'
            '<th class="num">rows</th><th class="num">P(b better)</th><th>verdict</th>'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    return (
        '<section id="comparison"><h2>Comparison</h2>'
        f'<div class="charts">{"".join(charts)}</div>{paired}</section>'
    )


def _histograms(results: Sequence[ModelResult]) -> str:
    figures = []
    for i, r in enumerate(results):
        for judge in judge_names(r.table):
            title = f"{judge} scores" + (f" — {r.model.id}" if len(results) > 1 else "")
            figures.append(
                f"<figure><figcaption>{_e(title)}</figcaption>"
                f"{histogram_svg(title, r.table[f'{judge}/score'].tolist(), PALETTE[i % 7])}"
                "</figure>"
            )
    if not figures:
        return ""
    return (
        f'<section id="histograms"><h2>Score histograms</h2><div class="charts">'
        f"{''.join(figures)}</div></section>"
    )


def render_html(
    results: Sequence[ModelResult],
    *,
    title: str | None = None,
    dataset: str | None = None,
    comparisons: Sequence[Comparison] = (),
    notes: Iterable[str] = (),
    generated: datetime | None = None,
) -> str:
    """The whole page for one model's run, or a comparison of several (one section each)."""
    generated = generated or datetime.now(UTC)
    if title is None:
        ids = ", ".join(r.model.id for r in results)
        title = f"Evaluation of {ids}" if len(results) == 1 else f"Comparison of {ids}"
    meta = [f"generated {generated.strftime('%Y-%m-%d %H:%M:%S %Z')}"]
    if dataset:
        meta.append(f"dataset {_e(dataset)}")
    meta_html = f'<p class="meta">{" · ".join(meta)}</p>'
    for r in results:
        meta_html += (
            f'<p class="meta">model <b>{_e(r.model.id)}</b> at {_e(r.model.base_url)} · '
            f"MLflow run <code>{_e(r.run_id)}</code></p>"
        )
    notes_html = "".join(f"<li>{_e(n)}</li>" for n in notes)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<header><h1>{_e(title)}</h1>{meta_html}",
        f'<ul class="notes">{notes_html}</ul>' if notes_html else "",
        "</header>",
    ]
    if len(results) > 1:
        parts.append(_comparison_section(results, comparisons))
    parts.append('<section id="summary"><h2>Summary</h2>')
    for r in results:
        if len(results) > 1:
            parts.append(f"<h3>{_e(r.model.id)}</h3>")
        parts.append(_judge_cards(r))
    parts.append("<h3>All metrics (95% intervals in brackets where available)</h3>")
    parts.append(_metrics_table(results) + "</section>")
    parts.append(_histograms(results))
    parts.append(_rows_section(results))
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(p for p in parts if p)


def render_outcome(outcome: Outcome) -> str:
    """The report of a whole invocation: one model's, or the comparison of all of them."""
    return render_html(
        outcome.results,
        dataset=outcome.dataset.name,
        comparisons=outcome.comparisons,
        notes=outcome.notes,
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
