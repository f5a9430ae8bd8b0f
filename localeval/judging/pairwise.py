"""Head to head: two versions' answers to one row, judged in both orders.

A judge is shown answer A then answer B and picks one or calls a tie; each pair is asked twice,
each answer first once. The two orders agreeing give the row's verdict; disagreeing, the row is
a tie and *inconsistent* (the judge followed the position, not the answers); a verdict that
cannot be read leaves the row unscored with its reason, out of every figure. The figures per
pair of versions: wins, ties and losses of B, the win rate with a bootstrap interval, position
consistency, the first-position rate, and a length-controlled win rate (`stats`).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .. import stats
from ..calls.client import CallFailed, Endpoint, call_of
from ..calls.pool import map_ordered
from ..calls.transport import Transport
from ..prompts import (
    ANSWER_PREFERENCE_V1,
    ANSWER_PREFERENCE_VERSION,
    JUSTIFICATION_CHARS,
    PREFERENCE_GRAMMAR_V1,
    PREFERENCE_JSON_V1,
    PREFERENCE_REFERENCE_V1,
    PREFERENCE_TEXT_V1,
)
from ..types import Answer, Call, Sample
from .grading import GradingOptions
from .verdict import quote_answer

Pick = Literal["A", "B", "tie"]  # as shown: A = the answer shown first
Outcome = Literal["a", "b", "tie"]  # per version: which of the pair (a, b) won
# Why a pairwise verdict has none: the judge's fault (no tag, several, cut off before its verdict,
# a failed call), or the candidate's (one of the two answers is missing: nothing to compare).
Unread = Literal["no_verdict", "several_verdicts", "cut_off", "judge_error", "no_answer"]

_TAG = re.compile(r"\[\[\s*([ABC])\s*\]\]")
_PICKS: dict[str, Pick] = {"A": "A", "B": "B", "C": "tie"}
_DECODER = json.JSONDecoder(strict=False)


def render(question: str, first: str, second: str, reference: str | None, use_json: bool) -> str:
    """The judge's prompt for one order: `first` is shown as answer A."""
    return ANSWER_PREFERENCE_V1.format(
        verdict_format=PREFERENCE_JSON_V1 if use_json else PREFERENCE_TEXT_V1,
        question=question,
        reference=PREFERENCE_REFERENCE_V1.format(reference=reference) if reference else "",
        first=quote_answer(first),
        second=quote_answer(second),
    )


@dataclass(frozen=True, kw_only=True)
class OrderVerdict:
    """The judge's reply for one order: its pick as shown, or why it has none."""

    pick: Pick | None
    explanation: str | None = None
    reason: Unread | None = None  # set exactly when pick is None
    raw: str | None = None
    call: Call | None = None


def parse_text(reply: str | None) -> OrderVerdict:
    """MT-Bench's format: an explanation, then exactly one of [[A]], [[B]], [[C]]. Several
    different tags are no verdict (the judge changed its mind or quoted the format)."""
    if not reply or not reply.strip():
        return OrderVerdict(pick=None, reason="no_verdict", raw=reply)
    tags = {m.group(1) for m in _TAG.finditer(reply)}
    if not tags:
        return OrderVerdict(pick=None, reason="no_verdict", raw=reply)
    if len(tags) > 1:
        return OrderVerdict(pick=None, reason="several_verdicts", raw=reply)
    (tag,) = tags
    explanation = _TAG.sub("", reply).strip() or None
    return OrderVerdict(pick=_PICKS[tag], explanation=explanation, raw=reply)


def parse_json(reply: str | None) -> OrderVerdict:
    """`{"verdict": "A"|"B"|"C", "explanation": ...}`, the first JSON object in the reply; the
    text format's tags when there is none."""
    text = reply or ""
    pos = text.find("{")
    while pos != -1:
        try:
            obj, _ = _DECODER.raw_decode(text, pos)
        except ValueError:
            pos = text.find("{", pos + 1)
            continue
        if isinstance(obj, dict) and str(obj.get("verdict", "")).strip().upper() in _PICKS:
            explanation = obj.get("explanation")
            return OrderVerdict(
                pick=_PICKS[str(obj["verdict"]).strip().upper()],
                explanation=str(explanation) if explanation is not None else None,
                raw=reply,
            )
        break
    return parse_text(reply)


@dataclass(frozen=True, kw_only=True)
class PairRow:
    """One row of a pair of versions (a, b): both orders' verdicts and what they make."""

    a_first: OrderVerdict  # a shown as A, b as B
    b_first: OrderVerdict  # b shown as A, a as B
    length_a: int = 0  # the answers' lengths in characters, for the length-controlled rate
    length_b: int = 0

    @property
    def reason(self) -> str | None:
        """Why the row has no verdict: the first unread order's reason, with which order."""
        for name, v in (("a first", self.a_first), ("b first", self.b_first)):
            if v.pick is None:
                return f"{v.reason} ({name})"
        return None

    def _winners(self) -> tuple[Outcome, Outcome]:
        def winner(pick: Pick | None, first: Outcome, second: Outcome) -> Outcome:
            return "tie" if pick == "tie" else first if pick == "A" else second

        return (
            winner(self.a_first.pick, "a", "b"),
            winner(self.b_first.pick, "b", "a"),
        )

    @property
    def consistent(self) -> bool | None:
        """Whether both orders gave the same verdict; None when one could not be read."""
        if self.reason is not None:
            return None
        one, two = self._winners()
        return one == two

    @property
    def outcome(self) -> Outcome | None:
        """The row's verdict: both orders' when they agree, a tie when they do not."""
        if self.reason is not None:
            return None
        one, two = self._winners()
        return one if one == two else "tie"


@dataclass(frozen=True, kw_only=True)
class PairFigures:
    """A vs B over the rows: B's wins, ties and losses and what they say."""

    a: str
    b: str
    rows: int
    wins: int  # B's
    ties: int
    losses: int
    unscored: int
    win_rate: float  # (wins + ties / 2) / rows with a verdict
    ci_low: float
    ci_high: float
    consistency: float  # share of rows with a verdict whose two orders agree
    first_position_rate: float  # share of single-order picks (ties aside) of the first shown
    lc_win_rate: float  # at no difference in length (stats.length_controlled)
    length_coef: float  # per standard deviation of the length difference (log-odds)

    @property
    def mostly_length(self) -> bool:
        """The length explains a good part of the preference: raw and controlled rates part by
        at least ten points."""
        return abs(self.win_rate - self.lc_win_rate) >= 0.10


def figures(a: str, b: str, rows: Sequence[PairRow]) -> PairFigures:
    """The figures for B against A (NaN where no row has a verdict)."""
    read = [r for r in rows if r.outcome is not None]
    values = [1.0 if r.outcome == "b" else 0.5 if r.outcome == "tie" else 0.0 for r in read]
    low, high = stats.bootstrap_ci(values, stats.CONFIDENCE, stats.RESAMPLES, stats.SEED)
    picks = [v.pick for r in read for v in (r.a_first, r.b_first) if v.pick != "tie"]
    lc, coef = stats.length_controlled(values, [r.length_b - r.length_a for r in read])
    return PairFigures(
        a=a,
        b=b,
        rows=len(rows),
        wins=sum(r.outcome == "b" for r in read),
        ties=sum(r.outcome == "tie" for r in read),
        losses=sum(r.outcome == "a" for r in read),
        unscored=len(rows) - len(read),
        win_rate=sum(values) / len(values) if values else math.nan,
        ci_low=low,
        ci_high=high,
        consistency=sum(bool(r.consistent) for r in read) / len(read) if read else math.nan,
        first_position_rate=picks.count("A") / len(picks) if picks else math.nan,
        lc_win_rate=lc,
        length_coef=coef,
    )


def headline(f: PairFigures) -> str:
    """One sentence for the terminal: who wins, how sure, how far the judge is to be trusted."""
    if f.rows == f.unscored:
        return f"{f.b} vs {f.a}: no row has a verdict ({f.unscored} unscored)."
    text = (
        f"{f.b} vs {f.a}: {f.b} wins {f.win_rate:.0%} [{f.ci_low:.0%}, {f.ci_high:.0%}] of "
        f"{f.rows - f.unscored} rows ({f.wins} wins, {f.ties} ties, {f.losses} losses); the judge "
        f"agreed with itself across orders on {f.consistency:.0%}; length-controlled "
        f"{f.lc_win_rate:.0%}"
    )
    if f.unscored:
        text += f"; {f.unscored} row(s) unscored"
    if f.mostly_length:
        text += "; the judge's preference follows the answers' length"
    return text + "."


class PairwiseJudge:
    """Asks one gateway endpoint which of two answers is better, each row in both orders, with
    the cache, retries and concurrency of every judge call (`calls.transport`)."""

    version = ANSWER_PREFERENCE_VERSION

    def __init__(
        self,
        endpoint: str,
        options: GradingOptions,
        transport: Transport,
        temperature: float,
        max_tokens: int,
    ) -> None:
        self.name = endpoint
        self.options = options
        self.transport = transport
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.use_json = options.judge_format == "json"

    def endpoint(self) -> Endpoint:
        extra: dict[str, Any] = {}
        if self.use_json and self.options.grammar:
            extra["grammar"] = PREFERENCE_GRAMMAR_V1.format(chars=JUSTIFICATION_CHARS)
        elif self.use_json:
            extra["response_format"] = {"type": "json_object"}
        return Endpoint(
            self.options.gateway_url.rstrip("/") + "/v1",
            self.name,
            self.temperature,
            self.max_tokens,
            extra,
            self.options.server_ids.get(self.name),
        )

    def ask(self, sample: Sample, first: str, second: str) -> OrderVerdict:
        """One order: `first` shown as answer A. The cache key holds both answers and the order
        (they are in the prompt)."""
        prompt = render(sample.input, first, second, sample.target, self.use_json)
        client = self.transport.client(self.endpoint())
        started = time.time()
        try:
            reply = client.complete([{"role": "user", "content": prompt}])
        except CallFailed as exc:
            call = Call(started, time.time() - started)
            return OrderVerdict(pick=None, reason="judge_error", raw=exc.reason, call=call)
        verdict = (parse_json if self.use_json else parse_text)(reply.text)
        call = call_of(reply, started)
        if verdict.pick is None and reply.finish_reason == "length":
            return OrderVerdict(pick=None, reason="cut_off", raw=reply.text, call=call)
        return OrderVerdict(
            pick=verdict.pick,
            explanation=verdict.explanation,
            reason=verdict.reason,
            raw=reply.text,
            call=call,
        )

    def judge_row(self, sample: Sample, a: Answer, b: Answer) -> PairRow:
        if a.text is None or b.text is None or a.failed or b.failed:
            missing = OrderVerdict(pick=None, reason="no_answer")
            return PairRow(a_first=missing, b_first=missing)
        return PairRow(
            a_first=self.ask(sample, a.text, b.text),
            b_first=self.ask(sample, b.text, a.text),
            length_a=len(a.text),
            length_b=len(b.text),
        )

    def judge_all(
        self,
        samples: Sequence[Sample],
        answers_a: Sequence[Answer],
        answers_b: Sequence[Answer],
        desc: str,
    ) -> list[PairRow]:
        """Every row of a pair of versions, `options.concurrency` rows at a time."""
        return map_ordered(
            lambda i: self.judge_row(samples[i], answers_a[i], answers_b[i]),
            range(len(samples)),
            self.options.concurrency,
            desc,
            quiet=self.options.quiet,
        )


def metric_name(model_id: str) -> str:
    """A model id as a part of an MLflow metric name (letters, digits, `_-. ` kept)."""
    return re.sub(r"[^A-Za-z0-9_.\- ]", "_", model_id)


def pair_metrics(f: PairFigures, a: str | None = None) -> dict[str, float]:
    """`pairwise/<A>_vs_<B>/...`: the figures for B against A, as MLflow metrics (`a`: what
    names A instead of its label, e.g. "baseline")."""
    prefix = f"pairwise/{metric_name(a or f.a)}_vs_{metric_name(f.b)}"
    values = {
        "win_rate": f.win_rate,
        "win_rate_ci_low": f.ci_low,
        "win_rate_ci_high": f.ci_high,
        "wins": f.wins,
        "ties": f.ties,
        "losses": f.losses,
        "consistency": f.consistency,
        "first_position_rate": f.first_position_rate,
        "unscored": f.unscored,
        "lc_win_rate": f.lc_win_rate,
        "length_coef": f.length_coef,
    }
    return {f"{prefix}/{k}": float(v) for k, v in values.items() if v == v}  # NaN: not logged
