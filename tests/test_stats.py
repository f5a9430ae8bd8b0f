"""Statistics against values worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from localeval.stats import (
    PairedComparison,
    bootstrap_ci,
    cohen_kappa_quadratic,
    krippendorff_alpha,
    paired_bootstrap,
    self_consistency,
    spread,
)

# ---- bootstrap -------------------------------------------------------------------------------


def test_bootstrap_ci_is_reproducible_and_brackets_the_mean():
    values = [1, 2, 3, 4, 5, None, 2, 4]  # None is left out: mean of the 7 others = 21 / 7 = 3
    first = bootstrap_ci(values, seed=7)
    assert first == bootstrap_ci(values, seed=7)
    assert first != bootstrap_ci(values, seed=8)
    low, high = first
    assert low < 3 < high
    # Every resample mean lies between the smallest and the largest value.
    assert low >= 1 and high <= 5


def test_bootstrap_ci_of_two_values_matches_the_resampling_distribution():
    # Values [0, 1]: a resample of 2 draws has mean 0 (p = 1/4), 0.5 (p = 1/2) or 1 (p = 1/4).
    # 95%: the 2.5% and 97.5% quantiles fall inside the masses at 0 and at 1 -> (0, 1).
    assert bootstrap_ci([0, 1]) == (0.0, 1.0)
    # 40%: the 30% and 70% quantiles both fall inside the mass at 0.5 (cumulative 0.25 -> 0.75).
    assert bootstrap_ci([0, 1], confidence=0.4) == (0.5, 0.5)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([3, 3, 3], (3.0, 3.0), id="all_equal"),
        pytest.param([4, None], (4.0, 4.0), id="one_value"),
    ],
)
def test_bootstrap_ci_degenerate(values, expected):
    assert bootstrap_ci(values) == expected


@pytest.mark.parametrize("values", [pytest.param([], id="empty"), pytest.param([None], id="none")])
def test_bootstrap_ci_without_values_is_nan(values):
    assert all(math.isnan(v) for v in bootstrap_ci(values))


def test_bootstrap_ci_rejects_a_bad_confidence():
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1, 2], confidence=95)


def _numpy_bootstrap_means(x: np.ndarray, seed: int) -> np.ndarray:
    """2000 resample means drawn here with numpy alone, as stats did before it called SciPy."""
    rng = np.random.default_rng(seed)
    return x[rng.integers(0, len(x), size=(2000, len(x)))].mean(axis=1)


# 600 rows: SciPy draws the resamples in two batches (1666 + 334), still one stream.
@pytest.mark.parametrize("n", [2, 7, 40, 600])
def test_bootstrap_ci_equals_the_percentile_bootstrap_computed_with_numpy(n):
    rng = np.random.default_rng(n)
    values = rng.integers(1, 6, size=n).astype(float)
    values[rng.random(n) < 0.2] = np.nan  # left out, as None is
    present = values[~np.isnan(values)]
    expected = np.quantile(_numpy_bootstrap_means(present, seed=3), [0.025, 0.975])
    assert bootstrap_ci(list(values), seed=3) == pytest.approx(tuple(expected), abs=1e-12)


def test_paired_bootstrap_equals_the_percentile_bootstrap_computed_with_numpy():
    rng = np.random.default_rng(1)
    a, b = rng.integers(1, 6, size=50).tolist(), rng.integers(1, 6, size=50).tolist()
    a[3] = None
    diffs = np.array([y - x for x, y in zip(a, b) if x is not None], dtype=float)
    means = _numpy_bootstrap_means(diffs, seed=0)
    result = paired_bootstrap(a, b)
    assert result.n_pairs == 49 and result.mean_diff == pytest.approx(diffs.mean())
    low, high = np.quantile(means, [0.025, 0.975])
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), abs=1e-12)
    assert result.p_b_better == float((means > 0).mean())  # the same resamples, exactly


def test_degenerate_statistics_warn_nothing():
    # SciPy's BCa warns and gives NaN on equal values, scikit-learn warns on a single grade;
    # our results for these are plain numbers or NaN, and a run's log stays quiet.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap_ci([3, 3, 3]) == (3.0, 3.0)
        assert paired_bootstrap([1, 2], [2, 3]).ci_low == 1.0
        assert math.isnan(cohen_kappa_quadratic([4, 4], [4, 4]))


def test_bootstrap_ci_rejects_no_resamples():
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci([1, 2], n_resamples=0)


def test_paired_bootstrap_uses_rows_both_scored():
    # Pairs kept: (1, 2) and (4, 4); diffs b - a = 1 and 0, mean 0.5.
    # Resample means of 2 diffs: 0 (p = 1/4), 0.5 (p = 1/2), 1 (p = 1/4), so P(diff > 0) = 3/4
    # and the 95% interval is (0, 1).
    result = paired_bootstrap([1, None, 3, 4], [2, 5, None, 4])
    assert (result.mean_diff, result.ci_low, result.ci_high, result.n_pairs) == (0.5, 0, 1, 2)
    assert result.p_b_better == pytest.approx(0.75, abs=0.03)  # 2000 resamples: sd ~0.01


def test_paired_bootstrap_constant_difference():
    # b is a + 1 on every row: every resample mean is 1.
    assert paired_bootstrap([1, 2, 3], [2, 3, 4]) == PairedComparison(1.0, 1.0, 1.0, 1.0, 3)


def test_paired_bootstrap_edge_cases():
    assert paired_bootstrap([3], [2]) == PairedComparison(-1.0, -1.0, -1.0, 0.0, 1)
    empty = paired_bootstrap([1, None], [None, 2])
    assert empty.n_pairs == 0 and math.isnan(empty.mean_diff) and math.isnan(empty.p_b_better)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_bootstrap([1, 2], [1])


# ---- Cohen's kappa ---------------------------------------------------------------------------


def test_kappa_two_categories_equals_unweighted_kappa():
    # With two labels the quadratic weight of a disagreement is 1: plain Cohen's kappa.
    # a = 1 1 2 2, b = 1 2 2 2: p_o = 3/4. Marginals a: 1/2, 1/2; b: 1/4, 3/4.
    # p_e = 1/2 * 1/4 + 1/2 * 3/4 = 1/2. kappa = (3/4 - 1/2) / (1 - 1/2) = 1/2.
    assert cohen_kappa_quadratic([1, 1, 2, 2], [1, 2, 2, 2], labels=(1, 2)) == pytest.approx(0.5)


def test_kappa_quadratic_by_hand():
    # a = 1 2 3, b = 1 3 3 on labels 1..5; weight (i - j)^2 / 16, and the 16 cancels.
    # Observed: sum (a - b)^2 / n = (0 + 1 + 0) / 3 = 1/3.
    # Expected (every a against every b) / n^2:
    #   a=1: (1-1)^2 + (1-3)^2 + (1-3)^2 = 8;  a=2: 1 + 1 + 1 = 3;  a=3: 4 + 0 + 0 = 4
    #   (8 + 3 + 4) / 9 = 15/9 = 5/3.  kappa = 1 - (1/3) / (5/3) = 1 - 1/5 = 0.8
    assert cohen_kappa_quadratic([1, 2, 3], [1, 3, 3]) == pytest.approx(0.8)


def test_kappa_skips_rows_missing_a_rating():
    # The same pairs as above once the rows with a None are dropped.
    a = [1, None, 2, 3, 5]
    b = [1, 4, 3, 3, None]
    assert cohen_kappa_quadratic(a, b) == pytest.approx(0.8)


def _kappa_by_formula(a: list[int], b: list[int]) -> float:
    """1 - mean (a - b)^2 over the rows / mean (a_i - b_j)^2 over every pair of rows."""
    x, y = np.array(a, dtype=float), np.array(b, dtype=float)
    return 1 - ((x - y) ** 2).mean() / ((x[:, None] - y[None, :]) ** 2).mean()


@pytest.mark.parametrize("seed", range(5))
def test_kappa_equals_the_formula_on_random_ratings(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    a, b = rng.integers(1, 6, size=n).tolist(), rng.integers(2, 5, size=n).tolist()
    assert cohen_kappa_quadratic(a, b) == pytest.approx(_kappa_by_formula(a, b), abs=1e-12)


def test_kappa_skips_nan_and_takes_any_scale():
    # NaN is missing, as None is; a 0.5-step scale weighs by label position, like 1-5.
    assert cohen_kappa_quadratic([1, math.nan, 2, 3], [1, 4, 3, 3]) == pytest.approx(0.8)
    half = (0.5, 1.0, 1.5, 2.0, 2.5)
    assert cohen_kappa_quadratic([0.5, 1.0, 1.5], [0.5, 1.5, 1.5], half) == pytest.approx(0.8)


def test_kappa_with_one_rater_constant_is_zero():
    # a always 3, b = 1 3 5: observed (4 + 0 + 4) / 3 equals expected 8/3 -> kappa 0, defined.
    assert cohen_kappa_quadratic([3, 3, 3], [1, 3, 5]) == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param([1, 2, 3, 5], [1, 2, 3, 5], 1.0, id="perfect_agreement"),
        # Observed (4-2)^2 = 4 on each row; expected also 4: no better than chance.
        pytest.param([4, 4, 4], [2, 2, 2], 0.0, id="constant_but_different"),
        # Reversed: observed (1-5)^2, (3-3)^2, (5-1)^2 -> 32/3; expected sum over all 9
        # pairs = 16+4+0 + 4+0+4 + 0+4+16 = 48 -> 48/9 = 16/3. kappa = 1 - 2 = -1.
        pytest.param([1, 3, 5], [5, 3, 1], -1.0, id="reversed"),
    ],
)
def test_kappa_cases(a, b, expected):
    assert cohen_kappa_quadratic(a, b) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # Both raters always say 3: no expected disagreement, kappa is 0/0. We return NaN
        # (undefined: agreement cannot be told from chance), not 1.
        pytest.param([3, 3, 3], [3, 3, 3], id="all_equal_ratings"),
        pytest.param([None, 2], [4, None], id="no_pair"),
    ],
)
def test_kappa_undefined_is_nan(a, b):
    assert math.isnan(cohen_kappa_quadratic(a, b))


def test_kappa_rejects_a_rating_outside_the_labels():
    with pytest.raises(ValueError, match=r"3\.5"):
        cohen_kappa_quadratic([3.5, 2], [3, 2])
    # Above the scale too: scikit-learn alone would drop the row and report 1.0 for the rest.
    with pytest.raises(ValueError, match="6"):
        cohen_kappa_quadratic([6, 2, 1], [3, 2, 1])


# ---- Krippendorff's alpha --------------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section E: 4 observers,
# 12 units, with missing values; published alpha: nominal 0.743, ordinal 0.815, interval 0.849.
# Rows are units, columns observers A-D.
KRIPPENDORFF_2011 = [
    [1, 1, None, 1],
    [2, 2, 3, 2],
    [3, 3, 3, 3],
    [3, 3, 3, 3],
    [2, 2, 2, 2],
    [1, 2, 3, 4],
    [4, 4, 4, 4],
    [1, 1, 2, 1],
    [2, 2, 2, 2],
    [None, 5, 5, 5],
    [None, None, 1, 1],
    [None, 3, None, None],
]


@pytest.mark.parametrize(
    ("level", "published"),
    [
        pytest.param("nominal", 0.743, id="nominal"),
        pytest.param("ordinal", 0.815, id="ordinal"),
        pytest.param("interval", 0.849, id="interval"),
    ],
)
def test_alpha_matches_krippendorff_2011(level, published):
    assert krippendorff_alpha(KRIPPENDORFF_2011, level=level) == pytest.approx(published, abs=5e-4)


# 3 units x 2 raters, plus a unit with one rating (not pairable) and one with none.
SMALL = [[1, 1], [2, 3], [3, 3], [5, None], [None, None]]


def test_alpha_interval_by_hand():
    # Pairable values: 1 1 | 2 3 | 3 3, n = 6; counts n_1 = 2, n_2 = 1, n_3 = 3.
    # Coincidences (each ordered pair in a unit, weight 1/(m-1) = 1): o11 = 2, o23 = o32 = 1,
    # o33 = 2. Interval delta^2 = (c - k)^2.
    # D_o = (o23 + o32) * 1 / n = 2/6 = 1/3.
    # D_e = 2 * (n1 n2 * 1 + n1 n3 * 4 + n2 n3 * 1) / (n (n - 1))
    #     = 2 * (2 + 24 + 3) / 30 = 58/30 = 29/15.
    # alpha = 1 - (1/3) / (29/15) = 1 - 5/29 = 24/29.
    assert krippendorff_alpha(SMALL, level="interval") == pytest.approx(24 / 29)


def test_alpha_ordinal_by_hand():
    # Ordinal delta(c, k) = (n_c + ... + n_k) - (n_c + n_k) / 2, squared:
    #   (1,2): (2 + 1) - 1.5 = 1.5 -> 2.25;  (2,3): (1 + 3) - 2 = 2 -> 4;
    #   (1,3): (2 + 1 + 3) - 2.5 = 3.5 -> 12.25.
    # D_o = (o23 + o32) * 4 / 6 = 4/3.
    # D_e = 2 * (2*1*2.25 + 2*3*12.25 + 1*3*4) / 30 = 2 * (4.5 + 73.5 + 12) / 30 = 6.
    # alpha = 1 - (4/3) / 6 = 7/9.
    assert krippendorff_alpha(SMALL, level="ordinal") == pytest.approx(7 / 9)


@pytest.mark.parametrize(
    "ratings",
    [
        pytest.param([[4, 4], [4, 4, 4], [4, None]], id="all_equal_ratings"),
        pytest.param([[1, None], [None, 2]], id="no_pairable_unit"),
        pytest.param([], id="empty"),
    ],
)
def test_alpha_undefined_is_nan(ratings):
    assert math.isnan(krippendorff_alpha(ratings))


def test_alpha_takes_nan_as_missing_and_ragged_units():
    with_nan = [[1, 1], [2, 3], [3, 3], [5, math.nan], [math.nan, math.nan]]
    assert krippendorff_alpha(with_nan) == pytest.approx(24 / 29)
    assert krippendorff_alpha([[1, 1], [2, 3], [3, 3], [5]]) == pytest.approx(24 / 29)


def test_alpha_with_a_second_value_only_in_an_unpairable_unit_is_nan():
    # The 5 is in a unit of one rating: the pairable ratings are all 4, nothing to compare.
    assert math.isnan(krippendorff_alpha([[4, 4], [5, None]]))


def test_alpha_rejects_an_unknown_level():
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha(SMALL, level="ratio")


# ---- repeated verdicts -----------------------------------------------------------------------


def test_self_consistency_counts_rows_with_two_scored_verdicts():
    repeats = [
        [4, 4, 4],  # agrees
        [5, 3, 3],  # disagrees
        [3, None, 3],  # agrees on its two scored verdicts
        [None, 2],  # one scored verdict: not counted
        [],  # nothing: not counted
    ]
    assert self_consistency(repeats) == pytest.approx(2 / 3)
    assert math.isnan(self_consistency([[None, 4], [1]]))


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        pytest.param([1, 3], 1.0, id="two_values"),  # mean 2, deviations +-1 -> sqrt(2/2) = 1
        # mean 3; squared deviations 4, 0, 4, 0 -> variance 8/4 = 2 -> sqrt(2)
        pytest.param([1, 3, 5, 3, None], math.sqrt(2), id="population_std_skips_none"),
        pytest.param([4, 4], 0.0, id="agreeing"),
        pytest.param([None, 3], None, id="one_scored"),
    ],
)
def test_spread(row, expected):
    assert spread(row) == (pytest.approx(expected) if expected is not None else None)
