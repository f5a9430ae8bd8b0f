"""Can this judge be trusted? Its grades against a person's, on the rows a person graded.

The statistics a user can gate on, per judge (after its key, e.g. `answer_similarity/v1/`):
`human_kappa` (quadratic-weighted Cohen's kappa of the judge's and the person's integer grades),
its 95% bootstrap interval `human_kappa_ci_low` / `human_kappa_ci_high`, `human_exact`,
`human_within_1`, `human_mean_diff` (judge minus person: leniency) and `human_labelled_rows`
(labelled rows the judge scored: the n behind all of them). Kappa corrects raw agreement for
chance: a judge that gives 5 to everything agrees often with a lenient person and still has a
kappa near 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import stats
from ..types import HumanAgreement

DIFFER_SHOWN = 10  # rows where judge and person differ most, in the report


def _grade(value: float, low: int, high: int) -> int:
    return min(max(round(value), low), high)


def human_agreement(
    judge: Sequence[float | None], person: Sequence[float | None], low: int = 1, high: int = 5
) -> HumanAgreement | None:
    """The judge's scores against a person's grades, row by row; None when no row is labelled.

    A judge's score that is a mean of several verdicts (repeats, endpoints) is rounded to the
    nearest grade for the kappa, the matrix and exact / within-one agreement; the mean
    difference uses it as it is.
    """
    labelled = [i for i, grade in enumerate(person) if grade is not None]
    if not labelled:
        return None
    pairs = [(i, judge[i], person[i]) for i in labelled if judge[i] is not None]
    grades = tuple(range(low, high + 1))
    matrix = [[0] * len(grades) for _ in grades]
    for _, j, p in pairs:
        matrix[_grade(j, low, high) - low][_grade(p, low, high) - low] += 1
    metrics = {"human_labelled_rows": float(len(pairs))}
    undefined: dict[str, str] = {}
    names = ("human_kappa", "human_kappa_ci_low", "human_kappa_ci_high", "human_exact",
             "human_within_1", "human_mean_diff")  # fmt: skip
    if not pairs:
        why = f"the judge scored none of the {len(labelled)} labelled rows"
        return HumanAgreement(grades, _frozen(matrix), metrics, dict.fromkeys(names, why), ())
    js = [_grade(j, low, high) for _, j, _ in pairs]
    ps = [_grade(p, low, high) for _, _, p in pairs]
    kappa = stats.cohen_kappa_quadratic(js, ps, grades)
    if kappa != kappa:
        why = (
            f"the judge and the person each gave one single grade ({js[0]} and {ps[0]}) on all "
            f"{len(pairs)} rows: agreement cannot be told from chance"
        )
        undefined.update(dict.fromkeys(names[:3], why))
    else:
        metrics["human_kappa"] = kappa
        low_ci, high_ci = stats.kappa_interval(js, ps, grades)
        if low_ci == low_ci:
            metrics["human_kappa_ci_low"], metrics["human_kappa_ci_high"] = low_ci, high_ci
        else:
            why = "no resample of the labelled rows had more than one grade"
            undefined.update(dict.fromkeys(names[1:3], why))
    metrics["human_exact"] = sum(j == p for j, p in zip(js, ps)) / len(pairs)
    metrics["human_within_1"] = sum(abs(j - p) <= 1 for j, p in zip(js, ps)) / len(pairs)
    metrics["human_mean_diff"] = sum(j - p for _, j, p in pairs) / len(pairs)
    differ = sorted(
        ((i, j, p) for i, j, p in pairs if j != p), key=lambda t: (-abs(t[1] - t[2]), t[0])
    )
    return HumanAgreement(grades, _frozen(matrix), metrics, undefined, tuple(differ[:DIFFER_SHOWN]))


def _frozen(matrix: list[list[int]]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(row) for row in matrix)
