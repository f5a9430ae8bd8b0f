"""The CI gates: --fail-under thresholds on any metric, --fail-if-worse against the baseline."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from .errors import ConfigError
from .types import ModelResult, Threshold

# What a run logs per judge (`<name>/<version>/<these>`) and besides the judges. A threshold on
# any other name could never be met: it is refused before the first call, not after the run.
JUDGE_METRICS = (
    "mean", "variance", "p90", "ci_low", "ci_high", "unscored_ratio", "unscored_verdict_ratio",
    "failed_rows", "judge_prompt_tokens", "judge_completion_tokens", "judge_tokens_per_s",
    "mean_spread", "self_consistency", "agreement_kappa", "agreement_alpha",
    "human_labelled_rows", "human_kappa", "human_kappa_ci_low", "human_kappa_ci_high",
    "human_exact", "human_within_1", "human_mean_diff",
)  # fmt: skip
OTHER_METRICS = (
    "exact_match/v1", "failed_rows", "candidate/failed_rows", "candidate/tokens_per_s",
    *(f"{m}/v1/{a}" for m in ("ari_grade_level", "flesch_kincaid_grade_level")
      for a in ("mean", "variance", "p90")),
    *(f"{m}/{a}" for m in ("latency_s", "prompt_tokens", "completion_tokens")
      for a in ("mean", "p90", "total")),
)  # fmt: skip


def check_names(thresholds: Sequence[Threshold], judge_keys: Sequence[str]) -> None:
    """Raise ConfigError for a --fail-under metric that no judge or heuristic of the run logs."""
    known = [f"{k}/{m}" for k in judge_keys for m in JUDGE_METRICS] + list(OTHER_METRICS)
    for threshold in thresholds:
        name = threshold.metric
        if name in known or name.startswith("time/"):
            continue
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        judges = ", ".join(f"{k}/mean" for k in judge_keys)
        raise ConfigError(
            f"--fail-under {name}={threshold.value:g}: this run logs no metric named {name!r}, "
            f"so the gate could never pass.{hint} The judges' means are {judges}; "
            "`--verbose` prints every metric of a run."
        )


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
