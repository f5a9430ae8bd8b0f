"""A verdict cut off by the judge's token budget: read as it stands, asked again (once, with
twice the budget) only when the judge was still reasoning, and its cost shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import evaluate

from localeval.judging.verdict import still_thinking

CUT = "length"


def _runs(tracking_uri: str, experiment: str):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id])


@pytest.mark.parametrize(
    ("text", "thinking"),
    [
        ("", True),  # the reasoning came apart (reasoning_content): the verdict never started
        ("   \n", True),
        ("<think>The answer names Databricks, but", True),
        ("<THINKING>First, the reference", True),
        ("<think>It is close.</think>\nscore: 4\njustification: The answer", False),
        ("The answer is similar to the reference in that it mentions", False),  # rambling
        ("score: 4\njustification: Close, but", False),
    ],
)
def test_only_a_reply_cut_off_before_its_verdict_could_start_is_still_thinking(text, thinking):
    assert still_thinking(text) is thinking


def _judge(*replies: str | dict):
    """The fake's reply: the candidate answers, the judge (`chat`) gives `replies` in order."""
    judge = iter(replies)

    def reply(body):
        if body["model"] != "chat":
            return "A."
        value = next(judge)
        return value if isinstance(value, dict) else {"content": value, "finish_reason": CUT}

    return reply


@pytest.fixture
def one_row(tmp_path):
    data = tmp_path / "one.csv"
    data.write_text("inputs,ground_truth\nWhat is MLflow?,An ML platform.\n", "utf-8")
    return ["--data", str(data), "--judge-max-tokens", "50", "--concurrency", "1"]


def _verdict(tracking_uri, experiment, tmp_path):
    (run,) = _runs(tracking_uri, experiment)
    import mlflow

    path = mlflow.MlflowClient(tracking_uri).download_artifacts(
        run.info.run_id, "judge_verdicts/answer_similarity.json", str(tmp_path)
    )
    (row,) = json.loads(Path(path).read_text(encoding="utf-8"))
    (verdict,) = row["chat"]
    return run.data.metrics, verdict


def test_a_rambling_cut_off_reply_is_not_asked_again_and_says_so(
    fake, run_args, capsys, tracking_uri, request, tmp_path, one_row
):
    rambling = "The answer is similar to the reference in that it mentions a platform and"
    fake.reply = _judge(rambling)
    code, out, err = evaluate(run_args + one_row, capsys)
    assert code == 0, err
    judge_calls = [c for c in fake.calls_for("chat") if c["max_tokens"] != 1]  # not the probe
    assert [c["max_tokens"] for c in judge_calls] == [50]  # asked once: no re-ask
    metrics, verdict = _verdict(tracking_uri, request.node.name, tmp_path)
    assert verdict["score"] is None and verdict["reason"] == "parse_failure"
    assert verdict["raw"] == rambling  # what the judge said is kept
    assert "cut off by the judge's 50-token budget" in verdict["justification"]
    assert "not asked again" in verdict["justification"]
    assert metrics["answer_similarity/v1/cut_off_ratio"] == 1.0
    words = len(rambling.split())  # the fake counts words as tokens
    assert metrics["answer_similarity/v1/verdict_tokens_mean"] == words
    assert metrics["answer_similarity/v1/verdict_tokens_max"] == words
    assert (
        f"answer_similarity/v1 verdicts: {words} tokens (p90 {words}, max {words}), 1 of 1 cut off"
        in out
    )


def test_a_cut_off_reply_that_holds_its_score_is_read_without_asking_again(
    fake, run_args, capsys, tracking_uri, request, tmp_path, one_row
):
    fake.reply = _judge("score: 4\njustification: Close to the reference, but it leaves")
    code, _, err = evaluate(run_args + one_row, capsys)
    assert code == 0, err
    assert len([c for c in fake.calls_for("chat") if c["max_tokens"] != 1]) == 1
    metrics, verdict = _verdict(tracking_uri, request.node.name, tmp_path)
    assert verdict["score"] == 4.0
    assert metrics["answer_similarity/v1/cut_off_ratio"] == 1.0  # scored, but cut off: shown


@pytest.mark.parametrize(
    ("second", "score"),
    [
        pytest.param({"content": "<think>Close.</think>\nscore: 3\njustification: Close."}, 3.0,
                     id="reaches_its_verdict"),
        pytest.param("<think>Still weighing whether the answer", None, id="cut_off_again"),
    ],
)  # fmt: skip
def test_a_judge_cut_off_while_reasoning_is_asked_once_more_with_twice_the_budget(
    fake, run_args, capsys, tracking_uri, request, tmp_path, one_row, second, score
):
    first = "<think>The answer names a platform, the reference"
    fake.reply = _judge(first, second, "score: 5")  # a third call would be scored 5
    code, _, err = evaluate(run_args + one_row, capsys)
    assert code == 0, err  # an unread verdict is unscored, not a failed call
    judge_calls = [c for c in fake.calls_for("chat") if c["max_tokens"] != 1]
    assert [c["max_tokens"] for c in judge_calls] == [50, 100]  # once more, 2×, never a third
    metrics, verdict = _verdict(tracking_uri, request.node.name, tmp_path)
    assert verdict["score"] == score
    if score is None:
        assert verdict["reason"] == "parse_failure"
        assert "again with 2× its 50 tokens" in verdict["justification"]
        assert metrics["answer_similarity/v1/cut_off_ratio"] == 1.0
    else:
        assert metrics["answer_similarity/v1/cut_off_ratio"] == 0.0  # the verdict ended
    text = second["content"] if isinstance(second, dict) else second
    both = len(first.split()) + len(text.split())  # one verdict, the tokens of both calls
    assert metrics["answer_similarity/v1/verdict_tokens_mean"] == both
    # A re-run finds both calls in the cache and asks nothing.
    before = len(fake.requests)
    code, _, err = evaluate(run_args + one_row, capsys)
    assert code == 0, err
    asked = [r for r in fake.requests[before:] if r["model"] == "chat" and r["max_tokens"] != 1]
    assert asked == []
