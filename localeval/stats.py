"""Statistics on judge scores: bootstrap intervals, paired comparisons, judge agreement.

Pure functions on plain lists; None (or NaN) marks a row that could not be graded and is left out,
as the report counts it separately. An undefined statistic is NaN, never a made-up number.

The resampling is SciPy's (`scipy.stats.bootstrap`) and the kappa scikit-learn's
(`cohen_kappa_score`); what stays here is what they do not do our way: leaving out unscored rows,
the one-row and no-row cases, labels checked rather than dropped, and NaN (not a warning) for an
undefined statistic. Both libraries are imported inside the functions: together they take about
a second to import, and `import localeval` (the CLI's start) needs neither.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from .types import PairedComparison

Value = float | int | None
# Every interval: 95%, 2000 resamples, seed 0, so the same scores always give the same interval.
CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0
BT_RESAMPLES = 200  # Bradley-Terry refits (Arena-Hard's figure; each refit is a fit)

# Resamples are drawn in batches of at most this many indices, so 2000 resamples of a large
# dataset stay within a few MB; the batching depends only on the row count, and SciPy draws the
# batches one after the other from the same generator, so a seed gives one result at any size.
_CHUNK_INDICES = 1_000_000

# Every aggregation a judge can log over its scored rows (a judges file's `aggregations:`) and the
# ones it logs unless told: the one table the judges file's parser, grading and the gate read.
AGGREGATIONS: dict[str, Callable[[np.ndarray], float]] = {
    "mean": np.mean,
    "variance": np.var,
    "p90": lambda x: np.percentile(x, 90),
    "min": np.min,
    "max": np.max,
    "median": np.median,
}
DEFAULT_AGGREGATIONS = ("mean", "variance", "p90")


def _present(value: Value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _resampled_means(
    x: np.ndarray, n_resamples: int, seed: int | None, confidence: float
) -> tuple[np.ndarray, tuple[float, float]]:
    """The bootstrap distribution of the mean of `x` (at least two values) and its interval."""
    from scipy.stats import bootstrap

    # Checked here with our wording: SciPy accepts 0 resamples and its messages name its own
    # parameters, not ours.
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    # The percentile method, not SciPy's default BCa: BCa gives NaN and a warning when every
    # value is the same ([3, 3, 3] -> (nan, nan), where the mean is certainly 3) and moves the
    # interval on small samples (1 2 3 4 5 2 4: (2.14, 4.0) against the percentile (2.0, 4.0));
    # the percentile interval is what the report and the stored baselines have always given.
    result = bootstrap(
        (x,),
        np.mean,
        n_resamples=n_resamples,
        batch=max(1, _CHUNK_INDICES // len(x)),
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return result.bootstrap_distribution, (float(interval.low), float(interval.high))


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    low, high = np.quantile(samples, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_ci(
    values: Sequence[Value],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int | None = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of the present values; (nan, nan) if none."""
    x = np.array([v for v in values if _present(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan
    # SciPy refuses a sample of one; its every resample is that value, so is the interval.
    if len(x) == 1:
        return float(x[0]), float(x[0])
    return _resampled_means(x, n_resamples, seed, confidence)[1]


def paired_bootstrap(
    a: Sequence[Value],
    b: Sequence[Value],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int | None = 0,
) -> PairedComparison:
    """Paired percentile bootstrap of mean(b - a) over the rows where both a and b are present."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    # Resampling the rows' differences is resampling the pairs (as SciPy's paired=True would),
    # the statistic depending on the differences alone; one call then gives the interval and
    # the resample means that P(b better) is counted from.
    diffs = np.array([y - x for x, y in zip(a, b) if _present(x) and _present(y)], dtype=float)
    n = len(diffs)
    if n == 0:
        return PairedComparison(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(diffs.mean())
    if n == 1:
        return PairedComparison(mean, mean, mean, float(mean > 0), 1)
    means, (low, high) = _resampled_means(diffs, n_resamples, seed, confidence)
    return PairedComparison(mean, low, high, float((means > 0).mean()), n)


def cohen_kappa_quadratic(
    a: Sequence[Value], b: Sequence[Value], labels: Sequence[float] = (1, 2, 3, 4, 5)
) -> float:
    """Quadratic-weighted Cohen's kappa of two raters on the rows both rated.

    NaN when undefined: no pair, or no expected disagreement (both raters gave one and the same
    grade throughout, so agreement cannot be told from chance). A value not in `labels` (say 3.5
    on a 1-5 scale) raises ValueError: the weights are defined on the label positions.
    """
    from sklearn.metrics import cohen_kappa_score

    if len(a) != len(b):
        raise ValueError(f"paired ratings need equal lengths, got {len(a)} and {len(b)}")
    if len(labels) < 2:
        raise ValueError("kappa needs at least two labels")
    position = {float(label): i for i, label in enumerate(labels)}
    pairs = [(x, y) for x, y in zip(a, b) if _present(x) and _present(y)]
    # scikit-learn drops a rating outside `labels` without a word (6 on a 1-5 scale) or fails
    # on a non-integer one with a message about target types; we name the rating.
    for v in (v for pair in pairs for v in pair):
        if float(v) not in position:
            raise ValueError(f"rating {v!r} is not one of the labels {tuple(labels)}")
    # It is given the label positions, not the values: its weights are (i - j)^2 on positions
    # anyway, and positions are class labels it takes for any scale (0.5 steps included).
    xs = [position[float(x)] for x, _ in pairs]
    ys = [position[float(y)] for _, y in pairs]
    # No pair, or one grade throughout from both raters (expected disagreement 0): undefined.
    # scikit-learn fails on no pair and warns on one grade; we return NaN without either, as
    # `kappa_interval` meets the one-grade case in many resamples.
    if len(set(xs) | set(ys)) < 2:
        return math.nan
    # Our weights were (i - j)^2 / (k - 1)^2; the divisor cancels in the ratio: the same kappa
    # (equal within 1e-15 on random ratings, tests/test_stats.py).
    return float(cohen_kappa_score(xs, ys, labels=list(range(len(labels))), weights="quadratic"))


def krippendorff_alpha(ratings: Sequence[Sequence[Value]], level: str = "interval") -> float:
    """Krippendorff's alpha for a units × raters matrix, None for a missing rating.

    Levels "nominal", "ordinal" and "interval" (Krippendorff 2011, "Computing Krippendorff's
    Alpha-Reliability"). Units with fewer than two ratings are not pairable and left out. NaN when
    undefined: no pairable unit, or every pairable rating the same (no expected disagreement).
    """
    # Still computed here, not by the `krippendorff` package (PyPI 0.9.0): that gives the same
    # alpha (within 1e-15 on the 2011 example and on random matrices) but is GPL-3.0-or-later,
    # which is the project's decision to take, not this module's; it also raises ValueError
    # where we return NaN (no pairable unit, a single value) and wants a padded raters x units
    # array.
    if level not in ("nominal", "ordinal", "interval"):
        raise ValueError(f"level must be nominal, ordinal or interval, got {level!r}")
    units = [[float(v) for v in row if _present(v)] for row in ratings]
    units = [u for u in units if len(u) >= 2]
    if not units:
        return math.nan
    values = sorted({v for u in units for v in u})
    index = {v: i for i, v in enumerate(values)}
    # Coincidence matrix: each ordered pair of ratings within a unit, weighted 1 / (m_u - 1).
    o = np.zeros((len(values), len(values)))
    for u in units:
        for p, x in enumerate(u):
            for q, y in enumerate(u):
                if p != q:
                    o[index[x], index[y]] += 1 / (len(u) - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    delta2 = _delta2(np.array(values), n_c, level)
    observed = (o * delta2).sum() / n
    expected = (np.outer(n_c, n_c) * delta2).sum() / (n * (n - 1))
    if expected == 0:
        return math.nan
    return float(1 - observed / expected)


def _delta2(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    """Squared difference between each pair of values, for the level of measurement."""
    if level == "nominal":
        return (values[:, None] != values[None, :]).astype(float)
    if level == "interval":
        return (values[:, None] - values[None, :]) ** 2
    # Ordinal: the values' ranks are what count, spaced by how often each value was used:
    # delta(c, k) = (sum of n_g for g from c to k) - (n_c + n_k) / 2.
    cumulative = np.cumsum(n_c)
    i, j = np.indices((len(values), len(values)))
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    between = cumulative[hi] - cumulative[lo] + n_c[lo]
    return (between - (n_c[i] + n_c[j]) / 2) ** 2


def self_consistency(repeats: Sequence[Sequence[Value]]) -> float:
    """Share of rows whose repeated verdicts all agree, over rows with at least two scored.

    Unscored repeats are left out of a row (they are counted as unscored elsewhere); a row with
    fewer than two scored verdicts says nothing about consistency and is not counted. NaN if no
    row qualifies.
    """
    rows = [[v for v in row if _present(v)] for row in repeats]
    rows = [r for r in rows if len(r) >= 2]
    if not rows:
        return math.nan
    return sum(min(r) == max(r) for r in rows) / len(rows)


def spread(row: Sequence[Value]) -> float | None:
    """Population standard deviation of a row's scored verdicts; None below two scored."""
    scored = [float(v) for v in row if _present(v)]
    return float(np.std(scored)) if len(scored) >= 2 else None


def kappa_interval(
    a: Sequence[Value],
    b: Sequence[Value],
    labels: Sequence[float],
    confidence: float = CONFIDENCE,
    n_resamples: int = RESAMPLES,
    seed: int | None = SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `cohen_kappa_quadratic` over the rows both rated.

    Resamples whose kappa is undefined (no expected disagreement in that resample) are left out;
    (nan, nan) when no resample gives a kappa.
    """
    pairs = [(x, y) for x, y in zip(a, b) if _present(x) and _present(y)]
    if len(pairs) < 2:
        return math.nan, math.nan
    # Our own loop, not scipy.stats.bootstrap(paired=True): its percentile interval is (nan, nan)
    # as soon as one resample's kappa is undefined, and here those resamples are left out.
    # Each kappa is scikit-learn's, about 0.5 ms of input checks apiece: some 1 s for 2000
    # resamples (0.06 s with the hand-written kappa before), once per judge with people's grades.
    rng = np.random.default_rng(seed)
    xs = np.array([x for x, _ in pairs], dtype=float)
    ys = np.array([y for _, y in pairs], dtype=float)
    kappas = []
    for _ in range(n_resamples):
        pick = rng.integers(0, len(pairs), size=len(pairs))
        kappa = cohen_kappa_quadratic(xs[pick].tolist(), ys[pick].tolist(), labels)
        if not math.isnan(kappa):
            kappas.append(kappa)
    if not kappas:
        return math.nan, math.nan
    return _interval(np.array(kappas), confidence)


def length_controlled(
    outcomes: Sequence[float], length_diffs: Sequence[float]
) -> tuple[float, float]:
    """AlpacaEval 2's length control reduced to one pair of versions: a logistic regression of
    each row's outcome for B (1 win, 0.5 tie, 0 loss; a tie enters as half a win and half a
    loss) on the standardized length difference (B's minus A's), read at no difference.

    Returns (the win rate at equal length, the length coefficient per standard deviation); NaN
    for both without rows; (the raw rate, 0) when the lengths do not vary or one outcome is all
    there is (nothing to regress on)."""
    y = np.asarray(outcomes, dtype=float)
    x = np.asarray(length_diffs, dtype=float)
    if len(y) == 0:
        return math.nan, math.nan
    sd = x.std()
    if sd == 0 or (np.all(y == y[0]) and y[0] in (0.0, 1.0)):
        return float(y.mean()), 0.0
    from sklearn.linear_model import LogisticRegression

    z = (x / sd).reshape(-1, 1)
    # Each row twice, as a win weighted by its outcome and a loss weighted by the rest.
    features = np.vstack([z, z])
    labels = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
    weights = np.concatenate([y, 1 - y])
    keep = weights > 0
    model = LogisticRegression(C=1e6, max_iter=1000)  # near-unpenalised: the MLE
    model.fit(features[keep], labels[keep], sample_weight=weights[keep])
    intercept, coef = float(model.intercept_[0]), float(model.coef_[0][0])
    return 1 / (1 + math.exp(-intercept)), coef


def bradley_terry(
    versions: Sequence[str],
    rows: Sequence[Sequence[tuple[int, int, float]]],
    confidence: float = CONFIDENCE,
    n_resamples: int = BT_RESAMPLES,
    seed: int = SEED,
) -> dict[str, tuple[float, float, float]]:
    """Bradley–Terry strengths of several versions from head-to-head outcomes, as Chatbot Arena
    fits them: a logistic regression without intercept on +1 (the second) / -1 (the first)
    columns, a tie half a win; shown on its Elo-like scale (400 log10 odds, mean 1000).

    Args:
        rows: per data row, its comparisons (i, j, outcome for j: 1 win, 0.5 tie, 0 loss); rows
            (all their comparisons together) are resampled for the intervals.

    Returns version -> (score, ci_low, ci_high); intervals percentile, `n_resamples` rounds.
    """
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    flat = [list(r) for r in rows if r]
    point = _bt_fit(len(versions), [c for r in flat for c in r])
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_resamples):
        picked = rng.integers(0, len(flat), len(flat)) if flat else []
        draws.append(_bt_fit(len(versions), [c for i in picked for c in flat[i]]))
    samples = np.array(draws)
    out = {}
    for k, name in enumerate(versions):
        low, high = _interval(samples[:, k], confidence)
        out[name] = (float(point[k]), low, high)
    return out


def _bt_fit(n: int, comparisons: Sequence[tuple[int, int, float]]) -> np.ndarray:
    """Elo-scale strengths (mean 1000); all 1000 without comparisons."""
    if not comparisons:
        return np.full(n, 1000.0)
    from sklearn.linear_model import LogisticRegression

    x = np.zeros((len(comparisons), n))
    for row, (i, j, _) in enumerate(comparisons):
        x[row, i], x[row, j] = -1.0, 1.0
    y = np.array([c[2] for c in comparisons], dtype=float)
    # Each comparison as a win of j weighted by its outcome and a loss by the rest, and mirrored
    # (-x, the other label): the same likelihood, and both labels present even when one version
    # won every comparison.
    features = np.vstack([x, x, -x, -x])
    labels = np.concatenate([np.ones(len(y)), np.zeros(len(y)), np.zeros(len(y)), np.ones(len(y))])
    weights = np.concatenate([y, 1 - y, y, 1 - y])
    keep = weights > 0
    # A mild penalty (C=100) keeps a version that won every comparison finite.
    model = LogisticRegression(C=100.0, fit_intercept=False, max_iter=1000)
    model.fit(features[keep], labels[keep], sample_weight=weights[keep])
    beta = model.coef_[0] * 400 / math.log(10)
    return beta - beta.mean() + 1000.0


def separability(scores: dict[str, tuple[float, float, float]]) -> float:
    """Share of version pairs whose intervals do not overlap (Arena-Hard's separability)."""
    names = list(scores)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    if not pairs:
        return math.nan
    apart = sum(scores[a][1] > scores[b][2] or scores[b][1] > scores[a][2] for a, b in pairs)
    return apart / len(pairs)
