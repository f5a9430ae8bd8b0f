"""How results are worded and numbered, for the terminal, the HTML page and the exports alike.

Everything here reads the typed results (`localeval.types`) and returns plain strings and
numbers; nothing parses text back, and nothing does I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..types import (
    NOT_APPLICABLE,
    NOT_GRADED,
    Call,
    Comparison,
    HumanAgreement,
    ModelResult,
    RowResult,
    Score,
)

MISSING = "—"
HISTOGRAM_MAX_BARS = 12  # up to this many distinct scores get a bar each, else equal-width bins
# MLflow's genai judges grade 1-5 (a judge's own scale is `JudgeInfo.low`/`high`): integer scores
# inside the scale get a bar per grade, so an empty grade shows as an empty bar rather than
# disappearing from the axis.
JUDGE_SCALE = (1, 5)
STATUSES = ("ok", "unscored", "failed")

Interval = tuple[float, float]


# ---- numbers ---------------------------------------------------------------------------------


def number(value: Any) -> float | None:
    """`value` as a float, or None when it is missing, NaN, text or not a number at all."""
    if value is None or isinstance(value, str | bytes):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(result) else result


def fmt(value: Any, digits: int = 4) -> str:
    """A plain number with `digits` significant digits: integers whole, never `1.18e+04`."""
    n = number(value)
    if n is None:
        return MISSING
    if math.isinf(n):
        return "∞" if n > 0 else "-∞"
    if n.is_integer() and abs(n) < 1e15:
        return str(int(n))
    # Digits after the point so that `digits` significant ones show; a large number keeps its whole
    # integer part (11834 rather than 1.18e+04), a tiny one its leading zeros.
    decimals = max(digits - 1 - math.floor(math.log10(abs(n))), 0)
    text = f"{n:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def signed(value: Any, digits: int = 3) -> str:
    """`fmt` with a sign on positive numbers too: a difference, `+0.5` or `-1`."""
    text = fmt(value, digits)
    return text if text.startswith(("-", MISSING)) else f"+{text}"


def interval_text(interval: Interval | None, digits: int = 4) -> str:
    """`[low, high]`, or "" without an interval."""
    if interval is None:
        return ""
    return f"[{fmt(interval[0], digits)}, {fmt(interval[1], digits)}]"


# ---- aggregates ------------------------------------------------------------------------------


def intervals(metrics: dict[str, float]) -> dict[str, Interval]:
    """`<metric>/ci_low` + `<metric>/ci_high` -> {<metric>: (low, high)}."""
    out = {}
    for key, low in metrics.items():
        if key.endswith("/ci_low"):
            base = key.removesuffix("/ci_low")
            lo, hi = number(low), number(metrics.get(f"{base}/ci_high"))
            if lo is not None and hi is not None:
                out[base] = (lo, hi)
    return out


def summary_rows(metrics: dict[str, float]) -> list[tuple[str, float | None, Interval | None]]:
    """(metric, value, interval) per metric, sorted. An interval joins its `<metric>/mean` (else
    `<metric>`) instead of showing ci_low and ci_high as rows of their own."""
    found = intervals(metrics)
    attached: dict[str, Interval] = {}
    for base, interval in found.items():
        if f"{base}/mean" in metrics:
            attached[f"{base}/mean"] = interval
        elif base in metrics:
            attached[base] = interval
        else:
            attached[f"{base} (interval)"] = interval
    rows = [
        (key, number(value), attached.get(key))
        for key, value in metrics.items()
        if not (key.endswith(("/ci_low", "/ci_high")) and key.rpartition("/")[0] in found)
    ]
    rows += [(key, None, interval) for key, interval in attached.items() if key not in metrics]
    return sorted(rows, key=lambda row: row[0])


@dataclass(frozen=True)
class JudgeSummary:
    """One judge's result for one model: its mean with the 95% interval, and how many it scored."""

    key: str
    mean: float | None
    interval: Interval | None
    scored: int
    total: int
    unscored_ratio: float | None
    not_applicable: int = 0  # rows the judge does not apply to (no reference): not in `total`

    @property
    def mean_text(self) -> str:
        return fmt(self.mean, 3)

    @property
    def interval_text(self) -> str:
        """`95% interval [low, high]`, or "no interval" (nothing scored is never a default)."""
        return f"95% interval {interval_text(self.interval)}" if self.interval else "no interval"

    @property
    def rows_text(self) -> str:
        text = f"{self.scored} of {self.total} rows scored"
        if self.unscored_ratio is not None:
            text += f", unscored ratio {fmt(self.unscored_ratio, 3)}"
        return text + self.not_applicable_text

    @property
    def not_applicable_text(self) -> str:
        return f" ({self.not_applicable} not applicable)" if self.not_applicable else ""


def judge_summary(result: ModelResult, key: str) -> JudgeSummary:
    """The summary of judge `key` (`<name>/<version>`) from the model's metrics and rows."""
    found = intervals(result.metrics)
    scores = result.scores(key)
    apart = sum(score_of(r, key).reason == NOT_APPLICABLE for r in result.rows)
    return JudgeSummary(
        key=key,
        mean=number(result.metrics.get(f"{key}/mean")),
        interval=found.get(key) or found.get(f"{key}/mean"),
        scored=sum(v is not None for v in scores),
        total=len(scores) - apart,
        unscored_ratio=number(result.metrics.get(f"{key}/unscored_ratio")),
        not_applicable=apart,
    )


def by_turn_text(result: ModelResult, key: str) -> str | None:
    """A judge's figures over conversations, in words (None for single questions): each turn
    number's mean, the mean over conversations and over their last turns."""
    found = {k.removeprefix(f"{key}/"): v for k, v in result.metrics.items()}
    turns = sorted(
        (int(k.split("/")[0].removeprefix("turn_")), v)
        for k, v in found.items()
        if k.startswith("turn_") and k.endswith("/mean")
    )
    if not turns:
        return None
    numbers = ", ".join(str(n) for n, _ in turns)
    means = ", ".join(fmt(v, 3) for _, v in turns)
    conversation = fmt(number(found.get("conversation_mean")), 3)
    last = fmt(number(found.get("last_turn_mean")), 3)
    return (
        f"{key} turns {numbers}: {means}; conversation mean {conversation}, last turn mean {last}"
    )


def turn_label(row: RowResult) -> str:
    """Where a row sits in its conversation (`ui 2/3`), or "" for a single question."""
    turn = row.sample.turn
    return "" if turn is None else f"{turn.conversation} {turn.number}/{turn.count}"


@dataclass(frozen=True)
class PairedWording:
    """A paired comparison's cells: b against a on one judge, worded once for every view."""

    models: str  # "b vs a"
    judge: str
    diff: str
    interval: str
    rows: int
    p_b_better: str
    verdict: str

    @property
    def line(self) -> str:
        """The terminal's one line; without P(b better) when it says nothing (a tie, no pair)."""
        chance = "" if self.p_b_better == MISSING else f", P(b better) {self.p_b_better}"
        return (
            f"{self.models} on {self.judge}: {self.diff} {self.interval} over {self.rows} rows"
            f"{chance}: {self.verdict}"
        )


def human_summary(key: str, agreement: HumanAgreement) -> str:
    """A judge against people in one line: kappa, its interval, exact and within-one agreement,
    leniency, and the rows behind them."""
    m, n = agreement.metrics, int(agreement.metrics.get("human_labelled_rows", 0))
    if "human_kappa" in m:
        kappa = f"kappa {fmt(m['human_kappa'], 3)}"
        if "human_kappa_ci_low" in m:
            kappa += f" [{fmt(m['human_kappa_ci_low'], 3)}, {fmt(m['human_kappa_ci_high'], 3)}]"
    else:
        kappa = f"kappa {MISSING} ({agreement.undefined.get('human_kappa', 'undefined')})"
    if n == 0:
        return f"{key} vs people: {kappa}"
    diff = m.get("human_mean_diff", 0.0)
    lean = "lenient" if diff > 0 else "strict" if diff < 0 else "neither lenient nor strict"
    return (
        f"{key} vs people on {n} labelled rows: {kappa}; exact {fmt(m['human_exact'], 3)}, "
        f"within one {fmt(m['human_within_1'], 3)}; judge minus person {signed(diff)} ({lean})"
    )


def versus(comparison: Comparison) -> str:
    """The baseline's one line: `vs baseline <run>: answer_similarity/v1 -0.8 [-1.1, -0.5] over
    20 rows: worse`."""
    w = paired(comparison)
    return f"vs {comparison.a}: {w.judge} {w.diff} {w.interval} over {w.rows} rows: {w.verdict}"


def paired(comparison: Comparison) -> PairedWording:
    """How a paired comparison reads; the verdict is the one `PairedComparison` gives."""
    r = comparison.result
    # Every pair equal: no resample is > 0, and "P(b better) 0.00" would read as "a is better".
    p = None if r.verdict == "no difference" else number(r.p_b_better)
    return PairedWording(
        models=f"{comparison.b} vs {comparison.a}",
        judge=comparison.judge,
        diff=signed(r.mean_diff),
        interval=f"[{signed(r.ci_low)}, {signed(r.ci_high)}]",
        rows=r.n_pairs,
        p_b_better=MISSING if p is None else f"{p:.2f}",
        verdict=comparison.verdict,
    )


# ---- rows ------------------------------------------------------------------------------------


def score_of(row: RowResult, judge_key: str) -> Score:
    """A judge's combined score of the row; unscored (not_graded) when it has no verdict there."""
    judgement = row.judgements.get(judge_key)
    if judgement is None:
        return Score.unscored(NOT_GRADED, f"{judge_key} has no verdict on this row")
    return judgement.combined


def row_status(row: RowResult) -> tuple[str, list[str]]:
    """'failed', 'unscored' or 'ok', with the reasons: the candidate's error, or per judge that
    could not grade, `<judge name>: <reason>`."""
    status = row.status
    if status == "failed":
        return status, [row.answer.error or "no answer"]
    reasons = [
        f"{key.split('/')[0]}: {judgement.combined.reason}"
        for key, judgement in row.judgements.items()
        if not judgement.combined.scored and judgement.combined.reason != NOT_APPLICABLE
    ]
    return status, reasons


def justification_text(score: Score) -> str:
    """The justification as MLflow's results table shows it: `[unscored: <reason>] <text>` when
    the judge could not grade, else the judge's words."""
    text = score.justification or ""
    if score.scored:
        return text
    if score.reason == NOT_APPLICABLE:
        return f"[not applicable] {text}".strip()
    return f"[unscored: {score.reason}] {text}".strip()


def shorten(text: str, limit: int, slack: int = 20) -> str:
    """`text` on one line, cut with "…" after a sentence (else a word) near `limit` characters;
    whole when it is at most `slack` longer (a cut that saves a few words hides more than it
    saves)."""
    text = " ".join(text.split())
    if len(text) <= limit + slack:
        return text
    head = text[: limit + 1]
    sentence = max(head.rfind(f"{end} ") for end in ".?!") + 1
    sentence = max(sentence, head.rfind("。") + 1)
    if sentence > limit * 3 // 4:
        return head[:sentence] + " …"
    space = head.rfind(" ")
    return (head[:space] if space > limit // 2 else head[:limit]).rstrip(",;:") + "…"


def cached_text(call: Call | None) -> str:
    """'yes' when the answer came from the reply cache, 'no', or "" when no call was made."""
    return "" if call is None else ("yes" if call.cached else "no")


# ---- histograms ------------------------------------------------------------------------------


def histogram_bins(
    values: Sequence[float | None], scale: tuple[int, int] = JUDGE_SCALE
) -> list[tuple[str, int, bool]]:
    """(label, count, is_unscored) bars: one per score when there are few distinct ones (integer
    scores get every step between their lowest and highest, the whole `scale` for scores inside
    it), else ten equal-width bins; unscored rows get a bar of their own."""
    scored = [n for n in map(number, values) if n is not None]
    unscored = len(values) - len(scored)
    bars: list[tuple[str, int, bool]] = []
    if scored:
        counts = Counter(scored)
        lo, hi = min(scored), max(scored)
        if all(v.is_integer() for v in scored) and hi - lo < HISTOGRAM_MAX_BARS:
            if scale[0] <= lo and hi <= scale[1]:
                lo, hi = scale
            keys = [float(k) for k in range(int(lo), int(hi) + 1)]
        elif len(counts) <= HISTOGRAM_MAX_BARS:
            keys = sorted(counts)
        else:
            keys = []
        if keys:
            bars = [(fmt(k), counts.get(k, 0), False) for k in keys]
        else:
            width = (hi - lo) / 10
            edges = [lo + i * width for i in range(11)]
            binned = Counter(min(int((v - lo) / width), 9) for v in scored)
            bars = [
                (f"{fmt(edges[i], 3)}–{fmt(edges[i + 1], 3)}", binned[i], False) for i in range(10)
            ]
    if unscored:
        bars.append(("unscored", unscored, True))
    return bars
