"""The CI gates: --fail-under thresholds on any metric, --fail-if-worse against the baseline."""

from __future__ import annotations

from collections.abc import Sequence

from .types import ModelResult, Threshold


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
