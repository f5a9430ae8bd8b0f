"""Head to head, the figures: what a pair of versions' verdicts on each row make.

Each row of a pair of versions (a, b) is judged in both orders (`pairwise`). The two orders
agreeing give the row's verdict; disagreeing, the row is a tie and *inconsistent* (the judge
followed the position, not the answers); a verdict that cannot be read leaves the row unscored
with its reason, out of every figure. Per pair: B's wins, ties and losses, its win rate with a
bootstrap interval, position consistency (with its interval), the first-position rate, a
length-controlled win rate, and, where a person said which answer is better, the judge's
agreement with that person (with and without ties, MT-Bench's two figures).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .. import stats
from ..types import Call

Pick = Literal["A", "B", "tie"]  # as shown: A = the answer shown first
Winner = Literal["a", "b", "tie"]  # per version: which of the pair (a, b) won
# Why a pairwise verdict has none: the judge's fault (no tag, several, cut off before its verdict,
# a failed call), or the candidate's (one of the two answers is missing: nothing to compare).
Unread = Literal["no_verdict", "several_verdicts", "cut_off", "judge_error", "no_answer"]
# A person's preference as the data spells it (case aside): the first answer column, the second,
# or neither.
HUMAN_PICKS: dict[str, Winner] = {"a": "a", "b": "b", "tie": "tie", "c": "tie"}


@dataclass(frozen=True, kw_only=True)
class PairwiseRubric:
    """How the head-to-head judge compares: ours (`answer_preference/v1`) or a judges file's
    `pairwise:` criteria under their own name and version."""

    name: str = "answer_preference"
    version: str = "v1"
    criteria: str | None = None  # None: ours (prompts.PREFERENCE_CRITERIA_V1)
    endpoint: str | None = None  # None: --judge-endpoint

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"


@dataclass(frozen=True, kw_only=True)
class OrderVerdict:
    """The judge's reply for one order: its pick as shown, or why it has none."""

    pick: Pick | None
    explanation: str | None = None
    reason: Unread | None = None  # set exactly when pick is None
    raw: str | None = None
    call: Call | None = None


@dataclass(frozen=True, kw_only=True)
class PairRow:
    """One row of a pair of versions (a, b): both orders' verdicts and what they make."""

    a_first: OrderVerdict  # a shown as A, b as B
    b_first: OrderVerdict  # b shown as A, a as B
    length_a: int = 0  # the answers' lengths in characters, for the length-controlled rate
    length_b: int = 0
    human: Winner | None = None  # a person's preference, where the data has one

    @property
    def reason(self) -> str | None:
        """Why the row has no verdict: the first unread order's reason, with which order."""
        for name, v in (("a first", self.a_first), ("b first", self.b_first)):
            if v.pick is None:
                return f"{v.reason} ({name})"
        return None

    def winners(self) -> tuple[Winner, Winner]:
        """Each order's winner, named by version (a first, then b first)."""

        def winner(pick: Pick | None, first: Winner, second: Winner) -> Winner:
            return "tie" if pick == "tie" else first if pick == "A" else second

        return winner(self.a_first.pick, "a", "b"), winner(self.b_first.pick, "b", "a")

    @property
    def consistent(self) -> bool | None:
        """Whether both orders gave the same verdict; None when one could not be read."""
        if self.reason is not None:
            return None
        one, two = self.winners()
        return one == two

    @property
    def outcome(self) -> Winner | None:
        """The row's verdict: both orders' when they agree, a tie when they do not."""
        if self.reason is not None:
            return None
        one, two = self.winners()
        return one if one == two else "tie"

    @property
    def b_points(self) -> float | None:
        """B's points on the row: 1 a win, 1/2 a tie, 0 a loss; None without a verdict."""
        return None if self.outcome is None else {"b": 1.0, "tie": 0.5, "a": 0.0}[self.outcome]


@dataclass(frozen=True, kw_only=True)
class HumanFigures:
    """The judge's row verdicts against a person's preferences, on the rows both have."""

    rows: int  # rows with a person's preference and the judge's verdict
    with_ties: float  # share of those rows on which both name the same (a, b or tie)
    with_ties_ci: tuple[float, float]
    decided: int  # rows on which neither the person nor the judge called a tie
    without_ties: float  # share of those on which both pick the same answer
    without_ties_ci: tuple[float, float]


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
    consistency_ci: tuple[float, float]
    inconsistent: int  # rows whose two orders disagree (counted as ties)
    first_position_rate: float  # share of single-order picks (ties aside) of the first shown
    lc_win_rate: float  # at no difference in length (stats.length_controlled)
    length_coef: float  # per standard deviation of the length difference (log-odds)
    human: HumanFigures | None = None

    @property
    def mostly_length(self) -> bool:
        """The length explains a good part of the preference: raw and controlled rates part by
        at least ten points."""
        return abs(self.win_rate - self.lc_win_rate) >= 0.10


def _share(hits: Sequence[bool]) -> tuple[float, tuple[float, float]]:
    """A share with its bootstrap interval over rows (NaN when there is no row)."""
    values = [1.0 if h else 0.0 for h in hits]
    ci = stats.bootstrap_ci(values, stats.CONFIDENCE, stats.RESAMPLES, stats.SEED)
    return (sum(values) / len(values) if values else math.nan), ci


def human_figures(rows: Sequence[PairRow]) -> HumanFigures | None:
    """The judge against the person (None when no row has both)."""
    both = [r for r in rows if r.human is not None and r.outcome is not None]
    if not both:
        return None
    decided = [r for r in both if r.human != "tie" and r.outcome != "tie"]
    with_ties, with_ci = _share([r.outcome == r.human for r in both])
    without, without_ci = _share([r.outcome == r.human for r in decided])
    return HumanFigures(
        rows=len(both),
        with_ties=with_ties,
        with_ties_ci=with_ci,
        decided=len(decided),
        without_ties=without,
        without_ties_ci=without_ci,
    )


def figures(a: str, b: str, rows: Sequence[PairRow]) -> PairFigures:
    """The figures for B against A (NaN where no row has a verdict)."""
    read = [r for r in rows if r.outcome is not None]
    values = [p for r in read if (p := r.b_points) is not None]
    low, high = stats.bootstrap_ci(values, stats.CONFIDENCE, stats.RESAMPLES, stats.SEED)
    picks = [v.pick for r in read for v in (r.a_first, r.b_first) if v.pick != "tie"]
    lc, coef = stats.length_controlled(values, [r.length_b - r.length_a for r in read])
    consistency, consistency_ci = _share([bool(r.consistent) for r in read])
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
        consistency=consistency,
        consistency_ci=consistency_ci,
        inconsistent=sum(r.consistent is False for r in read),
        first_position_rate=picks.count("A") / len(picks) if picks else math.nan,
        lc_win_rate=lc,
        length_coef=coef,
        human=human_figures(rows),
    )


def headline(f: PairFigures) -> str:
    """One sentence for the terminal: who wins, how sure, how far the judge is to be trusted."""
    if f.rows == f.unscored:
        return f"{f.b} vs {f.a}: no row has a verdict ({f.unscored} unscored)."
    low, high = f.consistency_ci
    text = (
        f"{f.b} vs {f.a}: {f.b} wins {f.win_rate:.0%} [{f.ci_low:.0%}, {f.ci_high:.0%}] of "
        f"{f.rows - f.unscored} rows ({f.wins} wins, {f.ties} ties, {f.losses} losses); the judge "
        f"agreed with itself across orders on {f.consistency:.0%} [{low:.0%}, {high:.0%}]; "
        f"length-controlled {f.lc_win_rate:.0%}"
    )
    if f.unscored:
        text += f"; {f.unscored} row(s) unscored"
    if f.mostly_length:
        text += "; the judge's preference follows the answers' length"
    if f.human is not None:
        h = f.human
        text += (
            f"; it agreed with people on {h.with_ties:.0%} [{h.with_ties_ci[0]:.0%}, "
            f"{h.with_ties_ci[1]:.0%}] of {h.rows} rows with ties"
        )
        if h.decided:
            text += (
                f", {h.without_ties:.0%} [{h.without_ties_ci[0]:.0%}, "
                f"{h.without_ties_ci[1]:.0%}] of {h.decided} without"
            )
        else:
            text += ", and no row is left without ties (one of them called every row a tie)"
    return text + "."


@dataclass(frozen=True, kw_only=True)
class HeadToHead:
    """One pair of versions judged head to head: every row's verdicts and their figures."""

    a: str  # the version shown as a (a label: a model id, or the baseline's)
    b: str
    rows: list[PairRow]
    figures: PairFigures
    a_metric: str | None = None  # what names a in metric names instead of its label
    version: str = "answer_preference/v1"  # the rubric's key (PairwiseRubric.key)
    answers: list[tuple[str | None, str | None]] = field(default_factory=list)  # (a's, b's)

    @property
    def prefix(self) -> str:
        """`pairwise/<A>_vs_<B>`, the metric names' stem."""
        return pair_prefix(self.a_metric or self.a, self.b)


def pair_prefix(a: str, b: str) -> str:
    """`pairwise/<A>_vs_<B>` for B against A: the stem of the pair's metric names."""
    return f"pairwise/{metric_name(a)}_vs_{metric_name(b)}"


def metric_name(model_id: str) -> str:
    """A model id as a part of an MLflow metric name (letters, digits, `_-. ` kept)."""
    return re.sub(r"[^A-Za-z0-9_.\- ]", "_", model_id)


# What `pair_metrics` logs per pair of versions (`pairwise/<A>_vs_<B>/<these>`); the human agreement
# figures only where the data holds a person's preference.
PAIR_METRICS = (
    "win_rate", "win_rate_ci_low", "win_rate_ci_high", "wins", "ties", "losses", "consistency",
    "consistency_ci_low", "consistency_ci_high", "inconsistent", "first_position_rate",
    "unscored", "lc_win_rate", "length_coef", "human_agreement", "human_agreement_ci_low",
    "human_agreement_ci_high", "human_agreement_without_ties",
    "human_agreement_without_ties_ci_low", "human_agreement_without_ties_ci_high", "human_rows",
)  # fmt: skip


def pair_metrics(h: HeadToHead) -> dict[str, float]:
    """`pairwise/<A>_vs_<B>/...`: the figures for B against A, as MLflow metrics."""
    f = h.figures
    values = {
        "win_rate": f.win_rate,
        "win_rate_ci_low": f.ci_low,
        "win_rate_ci_high": f.ci_high,
        "wins": f.wins,
        "ties": f.ties,
        "losses": f.losses,
        "consistency": f.consistency,
        "consistency_ci_low": f.consistency_ci[0],
        "consistency_ci_high": f.consistency_ci[1],
        "inconsistent": f.inconsistent,
        "first_position_rate": f.first_position_rate,
        "unscored": f.unscored,
        "lc_win_rate": f.lc_win_rate,
        "length_coef": f.length_coef,
    }
    if f.human is not None:
        values |= {
            "human_agreement": f.human.with_ties,
            "human_agreement_ci_low": f.human.with_ties_ci[0],
            "human_agreement_ci_high": f.human.with_ties_ci[1],
            "human_agreement_without_ties": f.human.without_ties,
            "human_agreement_without_ties_ci_low": f.human.without_ties_ci[0],
            "human_agreement_without_ties_ci_high": f.human.without_ties_ci[1],
            "human_rows": f.human.rows,
        }
    return {f"{h.prefix}/{k}": float(v) for k, v in values.items() if v == v}  # NaN: not logged
