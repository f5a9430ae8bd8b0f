"""Faults on the wire: every row ends scored or failed with its reason, none is lost, and a re-run
with the same arguments finishes the job, asking the servers only for what is missing.

Each fault is scripted on the fake server for one row ("Question 2?"); the others answer normally.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import VERDICT, evaluate
from fake_openai import FakeOpenAI, Fault

ROWS = 4
FAULTY = "Question 2?"
MODEL, JUDGE = "fake-model", "chat"


def _answer(body: dict[str, Any]) -> str:
    if body.get("model") in (JUDGE, "chat2"):
        return VERDICT
    return f"Answer to {body['messages'][-1]['content']}"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "questions.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["inputs", "ground_truth"])
        for i in range(1, ROWS + 1):
            writer.writerow([f"Question {i}?", f"Target answer {i}."])
    return path


@pytest.fixture
def args(fake: FakeOpenAI, run_args: list[str], data: Path) -> list[str]:
    fake.reply = _answer
    # One retry and a one-second timeout keep each fault to a second or two.
    return run_args + ["--data", str(data), "--max-retries", "1", "--timeout", "1"]


def _latest(tracking_uri: str, experiment: str) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The newest run's metrics and its eval table as a list of rows."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs(
        [exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    path = client.download_artifacts(run.info.run_id, "eval_results_table.json")
    table = json.loads(Path(path).read_text())
    return run.data.metrics, [dict(zip(table["columns"], row)) for row in table["data"]]


def _calls(fake: FakeOpenAI) -> tuple[int, int]:
    return len(fake.calls_for(MODEL)), len(fake.calls_for(JUDGE))


CONTEXT_500 = Fault.server_error(500, "the prompt exceeds the context window")
BAD_GATEWAY = Fault(502, "<html><body><h1>502 Bad Gateway</h1></body></html>")

# (what the server does for the faulty row's candidate call, in order; then it answers normally),
# the reason the row fails with (None: a retry saved it), how many calls that row took.
CANDIDATE_FAULTS = [
    pytest.param([Fault.server_error()], None, 2, id="500_then_ok"),
    pytest.param([Fault.server_error()] * 2, "HTTP 500: scripted failure", 2, id="500_twice"),
    pytest.param([BAD_GATEWAY] * 2, "HTTP 502: <html><body><h1>502 Bad Gateway", 2,
                 id="502_html_page"),
    pytest.param([Fault.rate_limited(1)], None, 2, id="429_retry_after_then_ok"),
    pytest.param([Fault.rate_limited(0.2)] * 2, "HTTP 429 (Retry-After: 0.2 s): rate limited", 2,
                 id="429_twice"),
    pytest.param([Fault.rate_limited(600)], "HTTP 429 (Retry-After: 600 s)", 1,
                 id="429_retry_after_over_sdk_cap"),
    pytest.param([Fault.hang(1.5)], None, 2, id="hang_then_ok"),
    pytest.param([Fault.hang(1.5)] * 2, "timeout: no reply within 1 s (2 attempts)", 2,
                 id="hang_past_timeout"),
    pytest.param([Fault.connection_reset()], None, 2, id="reset_then_ok"),
    pytest.param([Fault.connection_reset()] * 2, "connection error (2 attempts)", 2,
                 id="connection_reset"),
    pytest.param([Fault.invalid_json()], "unreadable reply: not JSON", 1, id="invalid_json"),
    pytest.param([Fault.empty_choices()], "unreadable reply: the server returned no choices", 1,
                 id="empty_choices"),
    pytest.param([Fault.context_length()],
                 "HTTP 400: the request exceeds the available context size", 1,
                 id="context_length_llama_cpp"),
    pytest.param([Fault.context_length("openai")], "HTTP 400: This model's maximum context", 1,
                 id="context_length_openai"),
    pytest.param([CONTEXT_500] * 2, "HTTP 500: the prompt exceeds the context window", 2,
                 id="context_overflow_500"),
]  # fmt: skip


@pytest.mark.parametrize(("faults", "reason", "attempts"), CANDIDATE_FAULTS)
def test_candidate_fault_ends_scored_or_failed_and_rerun_finishes(
    fake, args, capsys, tracking_uri, request, faults, reason, attempts
):
    fake.script_for(FAULTY, *faults, model=MODEL)
    code, out, err = evaluate(args, capsys)

    assert "Traceback" not in err
    assert code == (0 if reason is None else 3), err
    assert len(fake.calls_with(FAULTY, model=MODEL)) == attempts
    metrics, rows = _latest(tracking_uri, request.node.name)
    # Nothing lost, nothing reordered.
    assert [r["inputs"] for r in rows] == [f"Question {i}?" for i in range(1, ROWS + 1)]
    for row in rows:
        if row["inputs"] == FAULTY and reason is not None:
            assert reason in row["candidate_error"]
            assert row["answer_similarity/v1/score"] is None
            assert "candidate produced no answer" in row["answer_similarity/v1/justification"]
        else:
            assert row["candidate_error"] == ""
            assert row["answer"] == f"Answer to {row['inputs']}"
            assert row["answer_similarity/v1/score"] == 4.0
    failed = 0 if reason is None else 1
    assert metrics["candidate/failed_rows"] == failed
    assert metrics["answer_similarity/v1/mean"] == 4.0  # the failed row is not a zero
    assert metrics["answer_similarity/v1/unscored_ratio"] == failed / ROWS
    if reason is not None:
        assert reason in out and "row(s) failed" in err

    # The same command again: the fault is over; only what failed is asked again.
    before = _calls(fake)
    code, _, err = evaluate(args, capsys)
    assert code == 0, err
    assert _calls(fake) == (before[0] + failed, before[1] + failed)
    if failed:
        assert fake.calls_for(MODEL)[-1]["messages"][-1]["content"] == FAULTY
    metrics, rows = _latest(tracking_uri, request.node.name)
    assert metrics["candidate/failed_rows"] == 0
    assert [r["answer_similarity/v1/score"] for r in rows] == [4.0] * ROWS


def test_failed_row_is_excluded_from_heuristic_aggregates(
    fake, args, capsys, tracking_uri, request
):
    fake.reply = lambda body: VERDICT if body["model"] == JUDGE else _target(body)
    fake.script_for(FAULTY, Fault.context_length(), model=MODEL)
    code, _, _ = evaluate(args, capsys)
    assert code == 3
    metrics, _ = _latest(tracking_uri, request.node.name)
    assert metrics["exact_match/v1"] == 1.0  # every answered row matches its target


def _target(body: dict[str, Any]) -> str:
    number = body["messages"][-1]["content"].removeprefix("Question ").removesuffix("?")
    return f"Target answer {number}."


def test_retry_after_is_waited_not_the_backoff(fake, args, capsys):
    fake.script_for(FAULTY, Fault.rate_limited(1.2), model=MODEL)
    code, _, err = evaluate(args, capsys)
    assert code == 0, err
    calls = [t for t, body in zip(fake.times, fake.requests) if _is(body, FAULTY, MODEL)]
    # The SDK's own first backoff is at most 0.5 s: a gap over 1.2 s is the server's Retry-After.
    assert len(calls) == 2 and calls[1] - calls[0] >= 1.2


def test_backoff_is_exponential_capped_and_jittered(fake, monkeypatch):
    """The SDK's retry waits, as our client configures it: 0.5 s doubling to 8 s, minus <= 25%."""
    import openai._base_client as base

    from localeval.calls.client import CallFailed, Endpoint
    from localeval.calls.openai_client import OpenAIChatClient

    waits: list[float] = []
    monkeypatch.setattr(base, "time", SimpleNamespace(sleep=waits.append, time=time.time))
    fake.reply = Fault.server_error(503)
    client = OpenAIChatClient(Endpoint(fake.url, MODEL, 0.0, 8), timeout_s=1, max_retries=7)
    with pytest.raises(CallFailed, match="HTTP 503"):
        client.complete([{"role": "user", "content": "hi"}])
    assert fake.chat_calls == 8  # bounded: the first attempt and 7 retries
    nominal = [0.5, 1, 2, 4, 8, 8, 8]
    assert len(waits) == len(nominal)
    for wait, cap in zip(waits, nominal):
        assert 0.75 * cap <= wait <= cap


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        pytest.param(Fault(401, '{"error": {"message": "bad key"}}'), "refused the API key (401)",
                     id="401"),
        pytest.param(Fault(403, '{"error": {"message": "forbidden"}}'),
                     "refused the API key (403)", id="403"),
    ],
)  # fmt: skip
def test_auth_errors_stop_the_run_with_the_server_message(fake, args, capsys, fault, needle):
    fake.reply = lambda body: fault if body["model"] == MODEL else VERDICT
    code, _, err = evaluate(args + ["--concurrency", "1"], capsys)
    assert code == 2
    assert needle in err and "Traceback" not in err
    assert fake.chat_calls == 1  # not retried, and no other row is tried: the run stops


JUDGE_FAULTS = [
    pytest.param([Fault.server_error()] * 2, "judge call failed: HTTP 500", 2, id="500_twice"),
    pytest.param([Fault.hang(1.5)] * 2, "judge call failed: timeout", 2, id="hang_past_timeout"),
    pytest.param([Fault.invalid_json()], "judge call failed: unreadable reply", 1,
                 id="invalid_json"),
    pytest.param([Fault.empty_choices()], "judge call failed: unreadable reply", 1,
                 id="empty_choices"),
    pytest.param([Fault.context_length()], "judge call failed: HTTP 400", 1,
                 id="context_length"),
]  # fmt: skip


@pytest.mark.parametrize(("faults", "reason", "attempts"), JUDGE_FAULTS)
def test_judge_fault_leaves_row_unscored_with_reason_and_rerun_asks_only_that_judge(
    fake, args, capsys, tracking_uri, request, faults, reason, attempts
):
    # The judge prompt carries the row's answer: "Answer to Question 2?".
    fake.script_for(FAULTY, *faults, model=JUDGE)
    code, _, err = evaluate(args, capsys)
    # Exit 3 as for a failed row (a re-run asks for the verdict), but the row is unscored.
    assert code == 3 and "Traceback" not in err
    assert "1 row(s) are unscored: a judge call failed after retries (judge_error)" in err
    assert len(fake.calls_with(FAULTY, model=JUDGE)) == attempts
    metrics, rows = _latest(tracking_uri, request.node.name)
    assert [r["inputs"] for r in rows] == [f"Question {i}?" for i in range(1, ROWS + 1)]
    for row in rows:
        assert row["candidate_error"] == ""
        if row["inputs"] == FAULTY:
            assert row["answer_similarity/v1/score"] is None
            assert reason in row["answer_similarity/v1/justification"]
        else:
            assert row["answer_similarity/v1/score"] == 4.0
    assert metrics["answer_similarity/v1/mean"] == 4.0
    assert metrics["answer_similarity/v1/unscored_ratio"] == 1 / ROWS
    # The candidate answered: the judge is to blame, and the row is not a failed one.
    assert metrics["failed_rows"] == 0 and metrics["candidate/failed_rows"] == 0
    assert metrics["answer_similarity/v1/failed_rows"] == 1

    before = _calls(fake)
    code, _, err = evaluate(args, capsys)
    assert code == 0, err
    assert _calls(fake) == (before[0], before[1] + 1)  # answers all cached; one verdict missing
    _, rows = _latest(tracking_uri, request.node.name)
    assert [r["answer_similarity/v1/score"] for r in rows] == [4.0] * ROWS


def test_pool_is_bounded_for_answers_and_judges_and_keeps_row_order(
    fake, run_args, tmp_path, capsys, tracking_uri, request
):
    rows = 12
    path = tmp_path / "many.csv"
    path.write_text(
        "inputs,ground_truth\n" + "".join(f"Question {i}?,Target {i}.\n" for i in range(rows))
    )
    fake.reply = _answer
    fake.latency_s = 0.05
    code, _, err = evaluate(run_args + ["--data", str(path), "--concurrency", "3"], capsys)
    assert code == 0, err
    assert fake.max_in_flight_by_model[MODEL] == 3
    assert fake.max_in_flight_by_model[JUDGE] == 3
    _, table = _latest(tracking_uri, request.node.name)
    assert [r["answer"] for r in table] == [f"Answer to Question {i}?" for i in range(rows)]


def _is(body: dict[str, Any], needle: str, model: str) -> bool:
    return body.get("model") == model and needle in body["messages"][-1]["content"]
