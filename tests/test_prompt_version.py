"""A judge's prompt version: the same logged string as before, read back into its parts, and a
--baseline refusal that names the part that differs."""

from __future__ import annotations

import pytest

from localeval.judging.grading import PromptVersion, prompt_version
from localeval.judging.judges import builtin_judge
from localeval.prompts import LAYOUT_MLFLOW, LAYOUT_PREFIX
from localeval.tracking.baseline import version_mismatch
from localeval.types import JudgeSpec

WHERE = "--baseline last (run calm-owl-1, 0123abcd)"


@pytest.fixture(scope="module")
def judge():
    return builtin_judge(JudgeSpec("answer_similarity", ("chat",)), 0.0, 120)


@pytest.mark.parametrize(
    ("how", "logged"),
    [
        pytest.param(("text", LAYOUT_PREFIX), "answer_similarity/v1|prefix-v2|fenced-v1|text",
                     id="text"),
        pytest.param(("json", LAYOUT_MLFLOW), "answer_similarity/v1|mlflow-v1|fenced-v1|json-v2",
                     id="json"),
        pytest.param(("json", LAYOUT_PREFIX, True),
                     "answer_similarity/v1|prefix-v2|fenced-v1|json-v2+grammar-v1",
                     id="json_with_grammar"),
    ],
)  # fmt: skip
def test_the_logged_string_is_unchanged_and_reads_back(judge, how, logged):
    # The strings earlier runs logged as judge_version/<name>: baselines and caches rely on them.
    assert prompt_version(judge, *how) == logged
    version = PromptVersion.of(judge, *how)
    assert str(version) == version.value == logged
    assert PromptVersion.parse(logged) == version


def test_a_version_from_before_answers_were_quoted_reads_back_without_quoting():
    old = PromptVersion.parse("answer_similarity/v1|prefix-v2|text")
    assert old == PromptVersion("answer_similarity/v1", "prefix-v2", "", "text")
    assert str(old) == "answer_similarity/v1|prefix-v2|text"


@pytest.mark.parametrize("logged", ["", "answer_similarity/v1", "a|b", "a|b|c|d|e", "a||c|d"])
def test_what_is_not_a_version_is_refused(logged):
    with pytest.raises(ValueError, match=r"is not judge\|layout\|quoting\|verdict"):
        PromptVersion.parse(logged)


def test_differences_name_each_part_with_both_values():
    ours = PromptVersion("answer_similarity/v1", "prefix-v2", "fenced-v1", "json-v2")
    theirs = PromptVersion("answer_similarity/v1", "mlflow-v1", "fenced-v1", "text")
    assert ours.differences(theirs) == [
        ("layout", "prefix-v2", "mlflow-v1"),
        ("verdict", "json-v2", "text"),
    ]
    assert ours.differences(ours) == []


def test_baseline_refusal_names_the_part_that_differs_and_both_values():
    """Regression: the message named three parts of a four-part string, none of them the one
    that differed."""
    theirs = "answer_similarity/v1|prefix-v2|fenced-v1|text"
    ours = "answer_similarity/v1|prefix-v2|fenced-v1|json-v2"
    message = version_mismatch(WHERE, "answer_similarity/v1", theirs, ours)
    assert message.startswith(f"{WHERE} asked judge answer_similarity/v1 as {theirs!r}")
    assert "its verdict format (verdict) is 'text', this run's 'json-v2'" in message
    assert "layout" not in message and "quoting" not in message


def test_baseline_refusal_of_a_run_from_before_answers_were_quoted():
    message = version_mismatch(
        WHERE, "answer_similarity/v1", "answer_similarity/v1|prefix-v2|text",
        "answer_similarity/v1|prefix-v2|fenced-v1|text",
    )  # fmt: skip
    assert "its answer quoting (quoting) is none (a run from before answers were quoted), " in (
        message
    )
    assert "this run's 'fenced-v1'" in message and "verdict" not in message


def test_baseline_refusal_of_an_unreadable_version_lists_the_parts():
    message = version_mismatch(WHERE, "x/v1", "made by hand", "x/v1|prefix-v2|fenced-v1|text")
    assert "'made by hand'" in message
    assert "(metric version | prompt layout | answer quoting | verdict format)" in message
