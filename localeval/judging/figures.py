"""A judge's figures over its rows: MLflow's aggregations with their interval, the unscored
shares, consistency over repeats, agreement between endpoints, failures, and what its verdicts
cost (tokens per verdict, the share cut off by the token budget)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import stats
from ..types import NOT_APPLICABLE, Call, Judgement, RowResult, Score
from .judges import JudgeDef


def aggregate(
    values: Sequence[float | None], aggregations: Sequence[str] = stats.DEFAULT_AGGREGATIONS
) -> dict[str, float]:
    """The chosen aggregations over the scored rows, their 95% bootstrap interval, and the
    share of rows left unscored (excluded from everything else)."""
    scored = np.array([v for v in values if v is not None], dtype=float)
    out = {"unscored_ratio": 1 - len(scored) / len(values) if values else 0.0}
    if not len(scored):
        return out
    out.update({name: float(stats.AGGREGATIONS[name](scored)) for name in aggregations})
    low, high = stats.bootstrap_ci(
        list(scored), confidence=stats.CONFIDENCE, n_resamples=stats.RESAMPLES, seed=stats.SEED
    )
    out["ci_low"], out["ci_high"] = float(low), float(high)
    return out


def aggregates(
    judge: JudgeDef, rows: Sequence[Judgement], repeats: int
) -> tuple[dict[str, float], dict[str, str]]:
    """A judge's aggregates (MLflow's, plus unscored shares, CI, agreement, failures, usage),
    and for each one that cannot be computed, why (it is then left out, never made up)."""
    # Rows the judge does not apply to (no reference to compare with) are counted apart: they
    # are neither in its scores nor in its unscored share.
    applicable = [j for j in rows if j.combined.reason != NOT_APPLICABLE]
    out = aggregate([j.combined.value for j in applicable], judge.aggregations)
    out["not_applicable_rows"] = float(len(rows) - len(applicable))
    undefined: dict[str, str] = {}
    if "mean" not in out:
        undefined["mean"] = f"the judge scored none of the {len(applicable)} rows it applies to"
    asked = [v.score for j in rows for v in j.verdicts if v.call is not None]
    if asked:  # every verdict asked of the judge, all repeats and endpoints
        out["unscored_verdict_ratio"] = sum(not s.scored for s in asked) / len(asked)
    if repeats > 1:
        per_endpoint = [
            [s.value for s in scores] for j in rows for scores in j.by_endpoint().values()
        ]
        consistency = stats.self_consistency(per_endpoint)
        if consistency == consistency:
            out["self_consistency"] = consistency
        else:
            undefined["self_consistency"] = (
                f"no row has two scored verdicts of one endpoint (of {repeats} asked per row)"
            )
        spreads = [s for s in map(stats.spread, per_endpoint) if s is not None]
        if spreads:
            out["mean_spread"] = float(sum(spreads) / len(spreads))
    if len(judge.endpoints) > 1:
        name, value, why = _agreement(rows, judge.endpoints)
        if why is None:
            out[name] = value
        else:
            undefined[name] = why
    out["failed_rows"] = float(sum(j.call_failed for j in rows))  # a call of an endpoint failed
    if len(judge.endpoints) > 1:  # rows scored, but by fewer of its endpoints than were asked
        counts = [j.combined.endpoints or (0, 0) for j in rows]
        out["partial_rows"] = float(sum(0 < scored < asked for scored, asked in counts))
    calls = [v.call for j in rows for v in j.verdicts if v.call is not None]
    completion = sum(c.completion_tokens or 0 for c in calls)
    latency = sum(c.latency_s for c in calls if not c.cached)
    out.update(cost(calls))
    out["judge_prompt_tokens"] = float(sum(c.prompt_tokens or 0 for c in calls))
    out["judge_completion_tokens"] = float(completion)
    if latency > 0:
        out["judge_tokens_per_s"] = completion / latency
    return out, undefined


def by_turn(key: str, rows: Sequence[RowResult]) -> dict[str, float]:
    """A judge's figures over conversations (none for single questions): each turn number's mean
    (`<key>/turn_<n>/mean`), and over the conversations the mean of each one's scored turns
    (`conversation_mean`) and of their last turns (`last_turn_mean`)."""
    per_number: dict[int, list[float]] = {}
    per_conversation: dict[str, list[float]] = {}
    last: list[float] = []
    for row in rows:
        turn, judgement = row.sample.turn, row.judgements.get(key)
        if turn is None or judgement is None or judgement.combined.value is None:
            continue
        value = judgement.combined.value
        per_number.setdefault(turn.number, []).append(value)
        per_conversation.setdefault(turn.conversation, []).append(value)
        if turn.number == turn.count:
            last.append(value)
    out = {f"{key}/turn_{n}/mean": float(np.mean(v)) for n, v in sorted(per_number.items())}
    if per_conversation:
        means = [float(np.mean(v)) for v in per_conversation.values()]
        out[f"{key}/conversation_mean"] = float(np.mean(means))
    if last:
        out[f"{key}/last_turn_mean"] = float(np.mean(last))
    return out


def cost(calls: Sequence[Call]) -> dict[str, float]:
    """What the verdicts cost: completion tokens per verdict (mean, p90, max; a verdict asked
    again counts both calls) and the share of verdicts the token budget cut off, over the
    verdicts that got a reply. A judge that rambles shows here before it shows in the bill."""
    replied = answered(calls)
    if not replied:
        return {}
    out = {"cut_off_ratio": sum(c.finish_reason == "length" for c in replied) / len(replied)}
    if tokens := [c.completion_tokens for c in replied if c.completion_tokens is not None]:
        out["verdict_tokens_mean"] = float(np.mean(tokens))
        out["verdict_tokens_p90"] = float(np.percentile(tokens, 90))
        out["verdict_tokens_max"] = float(max(tokens))
    return out


def answered(calls: Sequence[Call]) -> list[Call]:
    """The calls that got a reply (a failed call has neither usage nor an ending)."""
    return [c for c in calls if c.completion_tokens is not None or c.finish_reason is not None]


def _agreement(
    rows: Sequence[Judgement], endpoints: tuple[str, ...]
) -> tuple[str, float, str | None]:
    """Agreement between the endpoints: (metric name, value, why it is undefined or None)."""

    # Each endpoint's per-row mean over its repeats; kappa wants the first repeat's integer grade.
    def mean(scores: list[Score]) -> float | None:
        vals = [s.value for s in scores if s.value is not None]
        return sum(vals) / len(vals) if vals else None

    def grade(score: Score) -> float | None:  # kappa's categories are the integer grades
        return None if score.value is None else float(round(score.value))

    by_endpoint = [j.by_endpoint() for j in rows]
    if len(endpoints) == 2:
        a = [grade(r[endpoints[0]][0]) for r in by_endpoint]
        b = [grade(r[endpoints[1]][0]) for r in by_endpoint]
        kappa = stats.cohen_kappa_quadratic(a, b)
        pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
        if kappa == kappa:
            return "agreement_kappa", kappa, None
        if not pairs:
            return "agreement_kappa", kappa, "no row was scored by both judges"
        return (
            "agreement_kappa",
            kappa,
            (
                f"both judges gave one single grade on all {len(pairs)} rows scored by both: "
                "agreement cannot be told from chance"
            ),
        )
    matrix = [[mean(r[e]) for e in endpoints] for r in by_endpoint]
    alpha = stats.krippendorff_alpha(matrix, level="interval")
    why = None if alpha == alpha else "no variation among the judges' scores, or no row two scored"
    return "agreement_alpha", alpha, why
