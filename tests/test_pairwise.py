"""Head-to-head judging: the reply parser, both orders combined, the figures and strengths."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from localeval import stats
from localeval.judging.pairs import (
    PAIR_METRICS,
    HeadToHead,
    OrderVerdict,
    PairRow,
    figures,
    headline,
    pair_metrics,
)
from localeval.judging.pairwise import (
    parse_json,
    parse_text,
    render,
)


@pytest.mark.parametrize(
    ("reply", "pick", "reason"),
    [
        ("A is correct and B is not.\n\n[[A]]", "A", None),
        ("Both say the same.\n[[C]]", "tie", None),
        ("B cites the reference. Verdict: [[ B ]]", "B", None),
        ("First I thought [[A]], but on reflection [[B]].", None, "several_verdicts"),
        ("[[A]] ... final answer: [[A]]", "A", None),  # the same tag twice is one verdict
        ("I prefer the second answer.", None, "no_verdict"),
        ("", None, "no_verdict"),
        (None, None, "no_verdict"),
    ],
)
def test_text_verdicts(reply, pick, reason):
    v = parse_text(reply)
    assert (v.pick, v.reason) == (pick, reason)


def test_json_verdicts_and_the_text_fallback():
    v = parse_json('{"verdict": "B", "explanation": "B matches the reference."}')
    assert (v.pick, v.explanation) == ("B", "B matches the reference.")
    assert parse_json('Sure. {"verdict": "c", "explanation": "same"}').pick == "tie"
    assert parse_json('{"verdict": "D"} no tag').reason == "no_verdict"
    assert parse_json("no JSON, but [[A]]").pick == "A"


def test_prompt_fixed_part_first_reference_optional_answers_fenced():
    with_ref = render("Q?", "one\nscore: 5", "two", "the reference", use_json=False)
    without = render("Q?", "one", "two", None, use_json=True)
    assert (
        with_ref.index("[[A]]")
        < with_ref.index("[User question]")
        < with_ref.index("[Reference answer]")
        < with_ref.index("[Answer A]")
        < with_ref.index("[Answer B]")
    )
    assert "| score: 5" in with_ref  # an answer's own verdict line is neutralised
    assert "[Reference answer]" not in without and '"verdict"' in without
    # The fixed part is the same for every row: a local server reuses it.
    other = render("Another question?", "x", "y", None, use_json=False)
    cut = with_ref.index("[User question]")
    assert other[:cut] == with_ref[:cut]


def _row(a_first: str | None, b_first: str | None, la: int = 10, lb: int = 10) -> PairRow:
    def v(pick):
        if pick is None:
            return OrderVerdict(pick=None, reason="no_verdict")
        return OrderVerdict(pick=pick)

    return PairRow(a_first=v(a_first), b_first=v(b_first), length_a=la, length_b=lb)


def test_both_orders_agreeing_disagreeing_and_unread():
    assert _row("B", "A").outcome == "b" and _row("B", "A").consistent  # b wins in both orders
    assert _row("A", "B").outcome == "a"
    flipped = _row("A", "A")  # always the first shown: a tie, inconsistent
    assert flipped.outcome == "tie" and flipped.consistent is False
    assert _row("tie", "tie").outcome == "tie" and _row("tie", "tie").consistent
    unread = _row("B", None)
    assert unread.outcome is None and unread.reason == "no_verdict (b first)"


def test_a_judge_that_prefers_the_better_answer_wherever_it_is():
    f = figures("v1", "v2", [_row("B", "A") for _ in range(8)] + [_row("A", "B")] * 2)
    assert (f.wins, f.ties, f.losses, f.unscored) == (8, 0, 2, 0)
    assert f.win_rate == pytest.approx(0.8) and f.consistency == 1.0
    assert f.first_position_rate == pytest.approx(0.5)
    assert f.ci_low < 0.8 < f.ci_high


def test_the_names_the_gate_knows_are_the_names_a_pair_logs():
    """--fail-under checks `pairwise/...` names against PAIR_METRICS before any call; they are
    the figures `pair_metrics` logs (with a person's preferences: every one of them)."""
    rows = [replace(_row("B", "A", 10, 12 + i), human="b") for i in range(6)]
    rows += [replace(_row("A", "B", 12, 10), human="tie")]
    h = HeadToHead(a="v1", b="v2", rows=rows, figures=figures("v1", "v2", rows))
    logged = [name.removeprefix(f"{h.prefix}/") for name in pair_metrics(h)]
    assert sorted(logged) == sorted(PAIR_METRICS)


def test_a_judge_that_always_picks_the_first_answer():
    f = figures("v1", "v2", [_row("A", "A")] * 10 + [_row(None, "A")])
    assert (f.wins, f.ties, f.losses, f.unscored) == (0, 10, 0, 1)
    assert f.win_rate == 0.5 and f.consistency == 0.0 and f.first_position_rate == 1.0
    assert "agreed with itself across orders on 0%" in headline(f)
    assert "1 row(s) unscored" in headline(f)


def test_length_control_moves_a_length_driven_preference_toward_half():
    # The judge prefers the longer answer; v2's answers are longer on most rows.
    rows = [_row("B", "A", la=50, lb=200) for _ in range(12)]
    rows += [_row("A", "B", la=200, lb=50) for _ in range(4)]
    rows += [_row("B", "A", la=100, lb=120), _row("A", "B", la=120, lb=100)]
    f = figures("v1", "v2", rows)
    assert f.win_rate == pytest.approx(13 / 18)
    assert f.length_coef > 1 and abs(f.lc_win_rate - 0.5) < abs(f.win_rate - 0.5)
    assert f.mostly_length and "follows the answers' length" in headline(f)


def test_length_control_by_hand():
    # Lengths equal: nothing to regress on, the raw rate.
    assert stats.length_controlled([1, 0, 0.5], [0, 0, 0]) == (0.5, 0.0)
    assert all(math.isnan(x) for x in stats.length_controlled([], []))
    # Outcomes independent of a symmetric length difference: the intercept is the raw log-odds.
    lc, coef = stats.length_controlled([1, 1, 0, 1, 1, 0], [-1, 1, -1, 1, -1, 1])
    assert lc == pytest.approx(4 / 6, abs=1e-3) and coef == pytest.approx(0.0, abs=1e-3)


def test_bradley_terry_orders_three_versions_and_matches_the_two_version_odds():
    # Two versions, b wins 3 of 4: the fitted log-odds are log(3), nearly (a mild penalty).
    two = stats.bradley_terry(["a", "b"], [[(0, 1, 1.0)]] * 3 + [[(0, 1, 0.0)]], n_resamples=50)
    gap = (two["b"][0] - two["a"][0]) * math.log(10) / 400
    assert gap == pytest.approx(math.log(3), rel=0.05)
    # Three versions of known order: c beats b beats a on most rows.
    rows = []
    for k in range(30):
        rows.append([(0, 1, 1.0 if k % 4 else 0.0), (1, 2, 1.0 if k % 3 else 0.0),
                     (0, 2, 1.0 if k % 5 else 0.5)])  # fmt: skip
    scores = stats.bradley_terry(["a", "b", "c"], rows, n_resamples=200, seed=1)
    assert scores["a"][0] < scores["b"][0] < scores["c"][0]
    assert sum(s[0] for s in scores.values()) == pytest.approx(3000)
    assert all(low <= point <= high for point, low, high in scores.values())
    assert stats.bradley_terry(["a", "b", "c"], rows, n_resamples=200, seed=1) == scores
    assert 0 <= stats.separability(scores) <= 1


def test_bradley_terry_one_version_winning_everything_stays_finite():
    scores = stats.bradley_terry(["a", "b"], [[(0, 1, 1.0)]] * 5, n_resamples=20)
    assert math.isfinite(scores["b"][0]) and scores["b"][0] > scores["a"][0]


def test_separability_counts_pairs_whose_intervals_do_not_overlap():
    scores = {
        "a": (900.0, 880.0, 920.0),
        "b": (1000.0, 990.0, 1010.0),
        "c": (1005.0, 995.0, 1020.0),
    }
    assert stats.separability(scores) == pytest.approx(2 / 3)
