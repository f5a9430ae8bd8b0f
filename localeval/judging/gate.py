"""The CI gates: --fail-under thresholds on any metric, --fail-if-worse against the baseline."""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..stats import AGGREGATIONS
from ..types import Dataset, ModelResult, Threshold
from .pairs import PAIR_METRICS, HeadToHead, pair_metrics

if TYPE_CHECKING:
    from .judges import JudgeDef

# What a run can log per judge (`<name>/<version>/<these>`, and its aggregations) and besides the
# judges. A threshold on any other name could never be met: it is refused before the first call,
# not after the run. A name this run can log but will not (self_consistency with one verdict per
# row) is a missing metric: the gate fails after the run (exit 4).
JUDGE_METRICS = (
    *AGGREGATIONS, "ci_low", "ci_high", "unscored_ratio", "unscored_verdict_ratio",
    "failed_rows", "judge_prompt_tokens", "judge_completion_tokens", "judge_tokens_per_s",
    "verdict_tokens_mean", "verdict_tokens_p90", "verdict_tokens_max", "cut_off_ratio",
    "mean_spread", "self_consistency", "agreement_kappa", "agreement_alpha", "partial_rows",
    "not_applicable_rows",
    "human_labelled_rows", "human_kappa", "human_kappa_ci_low", "human_kappa_ci_high",
    "human_exact", "human_within_1", "human_mean_diff",
)  # fmt: skip
# Logged by every judge whatever the run (figures.aggregates), besides its aggregations.
ALWAYS = (
    "ci_low", "ci_high", "unscored_ratio", "unscored_verdict_ratio", "failed_rows",
    "judge_prompt_tokens", "judge_completion_tokens", "judge_tokens_per_s",
    "verdict_tokens_mean", "verdict_tokens_p90", "verdict_tokens_max", "cut_off_ratio",
    "not_applicable_rows",
)  # fmt: skip
REPEATED = ("mean_spread", "self_consistency")  # --judge-repeats above 1
HUMAN = JUDGE_METRICS[JUDGE_METRICS.index("human_labelled_rows") :]  # rows a person graded
READABILITY = tuple(
    f"{m}/v1/{a}" for m in ("ari_grade_level", "flesch_kincaid_grade_level")
    for a in ("mean", "variance", "p90")
)  # fmt: skip
CANDIDATE = (
    "candidate/failed_rows", "candidate/tokens_per_s",
    *(f"{m}/{a}" for m in ("latency_s", "prompt_tokens", "completion_tokens")
      for a in ("mean", "p90", "total")),
)  # fmt: skip
OTHER_METRICS = ("exact_match/v1", "failed_rows", *CANDIDATE, *READABILITY)


def judge_metrics(judge: JudgeDef, repeats: int, labelled: bool) -> list[str]:
    """The names this run will log for `judge` (after its key): its aggregations and the
    statistics every judge logs, consistency over repeats, agreement between endpoints, and
    agreement with people when a person graded some rows."""
    names = [*judge.aggregations, *ALWAYS]
    if repeats > 1:
        names += REPEATED
    if len(judge.endpoints) == 2:
        names.append("agreement_kappa")
    elif len(judge.endpoints) > 2:
        names.append("agreement_alpha")
    if len(judge.endpoints) > 1:
        names.append("partial_rows")
    if labelled:
        names += HUMAN
    return names


def logged_names(
    judges: Sequence[JudgeDef | str], repeats: int = 1, dataset: Dataset | None = None
) -> tuple[list[str], list[str]]:
    """(every name the run can log, the names it will log): the typo hints offer only the latter.

    A judge given by its key alone (how it asks is not known) may log any per-judge metric; the
    human agreement metrics are known to be logged only from the `dataset`.
    """
    known: list[str] = []
    will: list[str] = []
    for judge in judges:
        if isinstance(judge, str):
            names = [f"{judge}/{m}" for m in JUDGE_METRICS]
            known += names
            will += names
            continue
        labelled = dataset is not None and any(judge.name in s.labels for s in dataset.samples)
        known += [f"{judge.key}/{m}" for m in dict.fromkeys((*JUDGE_METRICS, *judge.aggregations))]
        will += [f"{judge.key}/{m}" for m in judge_metrics(judge, repeats, labelled)]
        # Conversations: the figures per turn number and per conversation (figures.by_turn).
        turns = max((s.turn.count for s in dataset.samples if s.turn), default=0) if dataset else 0
        if turns:
            over = [f"turn_{n}/mean" for n in range(1, turns + 1)]
            over += ["conversation_mean", "last_turn_mean"]
            known += [f"{judge.key}/{m}" for m in over]
            will += [f"{judge.key}/{m}" for m in over]
    known += OTHER_METRICS
    from_data = dataset is not None and any(s.answer is not None for s in dataset.samples)
    if dataset is None or dataset.has_targets:
        will.append("exact_match/v1")
    will.append("failed_rows")
    if not from_data:  # answers read from the data made no call: no candidate usage
        will += CANDIDATE
    if importlib.util.find_spec("textstat") is not None:
        will += READABILITY
    return known, will


def check_names(
    thresholds: Sequence[Threshold],
    judges: Sequence[JudgeDef | str],
    repeats: int = 1,
    dataset: Dataset | None = None,
    pair_prefixes: Sequence[str] = (),
) -> None:
    """Raise ConfigError for a --fail-under metric that no judge or heuristic of the run logs,
    with the closest names this run will log (`repeats`: --judge-repeats; `dataset`: the rows,
    which say whether a person graded some and whether the answers come from the data;
    `pair_prefixes`: `pairwise/<A>_vs_<B>` of each pair --pairwise judges)."""
    known, will = logged_names(judges, repeats, dataset)
    paired = [f"{prefix}/{m}" for prefix in pair_prefixes for m in PAIR_METRICS]
    for threshold in thresholds:
        name = threshold.metric
        if name in known or name in paired or name.startswith("time/"):
            continue
        if name.startswith("pairwise/"):
            close = difflib.get_close_matches(name, paired, n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(
                f"--fail-under {name}={threshold.value:g}: "
                + (
                    f"this run logs no head-to-head metric named {name!r}.{hint} Its pairs are "
                    + ", ".join(pair_prefixes)
                    if pair_prefixes
                    else "head-to-head metrics are logged only with --pairwise"
                )
                + "."
            )
        keys = [j if isinstance(j, str) else j.key for j in judges]
        close = _closest(name, will, keys)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        means = ", ".join(f"{k}/mean" for k in keys)
        raise ConfigError(
            f"--fail-under {name}={threshold.value:g}: this run logs no metric named {name!r}, "
            f"so the gate could never pass.{hint} The judges' means are {means}; "
            "`--verbose` prints every metric of a run."
        )


def _closest(name: str, names: Sequence[str], keys: Sequence[str]) -> list[str]:
    """The names closest to a misspelt one. After a judge's own key (`answer_similarity/v1/`),
    only what follows it is compared: the shared key would make every metric of the judge look
    close (`agreement_kapa` -> `mean`, `p90`)."""
    for key in keys:
        if name.startswith(f"{key}/"):
            own = [n.removeprefix(f"{key}/") for n in names if n.startswith(f"{key}/")]
            close = difflib.get_close_matches(name.removeprefix(f"{key}/"), own, n=3, cutoff=0.6)
            return [f"{key}/{n}" for n in close]
    return difflib.get_close_matches(name, names, n=3, cutoff=0.6)


def check_gate(
    thresholds: Sequence[Threshold], results: Sequence[ModelResult], fail_if_worse: bool = False
) -> list[str]:
    """One line per --fail-under threshold not met, and per judge worse than the baseline."""
    failures = []
    for result in results if fail_if_worse else ():
        for c in result.vs_baseline:
            if c.verdict == "worse":
                r = c.result
                failures.append(
                    f"{result.model.id}: {c.judge} is worse than {c.a}: {r.mean_diff:+.3g} "
                    f"[{r.ci_low:+.3g}, {r.ci_high:+.3g}] over {r.n_pairs} rows (--fail-if-worse)"
                )
    for threshold in thresholds:
        if threshold.metric.startswith("pairwise/"):
            continue  # the pairs' metrics: check_pairs
        for result in results:
            value = result.metrics.get(threshold.metric)
            if value is None or value != value:
                failures.append(
                    f"{result.model.id}: {threshold.metric} is missing (no row could be graded, "
                    f"or no such metric), required >= {threshold.value:g}"
                )
            elif value < threshold.value:
                failures.append(
                    f"{result.model.id}: {threshold.metric} = {value:.4g} < {threshold.value:g}"
                )
    return failures


def check_pairs(
    thresholds: Sequence[Threshold], pairs: Sequence[HeadToHead], fail_if_worse: bool = False
) -> list[str]:
    """One line per `pairwise/...` threshold not met, and per version whose win rate against
    the baseline lies entirely below one half (--fail-if-worse)."""
    failures = []
    for h in pairs if fail_if_worse else ():
        f = h.figures
        if h.a_metric == "baseline" and f.ci_high < 0.5:
            failures.append(
                f"{h.b} loses head to head against {h.a}: win rate {f.win_rate:.0%} "
                f"[{f.ci_low:.0%}, {f.ci_high:.0%}], below one half (--fail-if-worse)"
            )
    logged = {k: v for h in pairs for k, v in pair_metrics(h).items()}
    for threshold in thresholds:
        if not threshold.metric.startswith("pairwise/"):
            continue
        value = logged.get(threshold.metric)
        if value is None:
            failures.append(
                f"{threshold.metric} is missing (no row of the pair has a verdict), required "
                f">= {threshold.value:g}"
            )
        elif value < threshold.value:
            failures.append(f"{threshold.metric} = {value:.4g} < {threshold.value:g}")
    return failures
