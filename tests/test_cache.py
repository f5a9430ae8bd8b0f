"""The reply cache: a re-run pays for nothing, a killed run resumes, and writers do not collide."""

from __future__ import annotations

import csv
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, VERDICT, evaluate
from fake_openai import FakeOpenAI

from localeval.calls.cache import CachedClient, ReplyCache, cache_key
from localeval.calls.client import ChatResponse, Endpoint

MODEL, JUDGE = "fake-model", "chat"


def _answer(body: dict[str, Any]) -> str:
    if body.get("model") in (JUDGE, "chat2"):
        return VERDICT
    return f"Answer to {body['messages'][-1]['content']}"


def _write_csv(path: Path, rows: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["inputs", "ground_truth"])
        for i in range(rows):
            writer.writerow([f"Question {i}?", f"Target answer {i}."])
    return path


@pytest.fixture
def args(fake: FakeOpenAI, run_args: list[str], tmp_path: Path) -> list[str]:
    fake.reply = _answer
    return run_args + ["--data", str(_write_csv(tmp_path / "q.csv", 3))]


def _calls(fake: FakeOpenAI) -> tuple[int, int]:
    return len(fake.calls_for(MODEL)), len(fake.calls_for(JUDGE))


def _metrics(tracking_uri: str, experiment: str) -> dict[str, float]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs(
        [exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    return run.data.metrics


# ---- through the entry point -----------------------------------------------------------------


def test_identical_rerun_makes_zero_llm_calls(fake, args, capsys, tracking_uri, request):
    code, _, _ = evaluate(args, capsys)
    assert code == 0
    assert _calls(fake) == (3, 3)
    first = _metrics(tracking_uri, request.node.name)

    code, out, _ = evaluate(args, capsys)
    assert code == 0
    assert fake.chat_calls == 6  # no candidate call, no judge call
    again = _metrics(tracking_uri, request.node.name)
    assert again["answer_similarity/v1/mean"] == first["answer_similarity/v1/mean"] == 4.0
    assert again["completion_tokens/total"] == first["completion_tokens/total"]  # usage kept
    assert "Answer to Question 2?" in out


def test_refresh_asks_again_and_stores_the_new_replies(fake, args, capsys):
    assert evaluate(args, capsys)[0] == 0
    before = _calls(fake)
    assert evaluate(args + ["--refresh"], capsys)[0] == 0
    after = _calls(fake)
    assert after[0] - before[0] == 3
    # MLflow tries each metric on the first row before the full run; with --refresh that row's
    # verdict is asked twice.
    assert after[1] - before[1] in (3, 4)
    assert evaluate(args, capsys)[0] == 0
    assert _calls(fake) == after  # what --refresh got was stored


def test_no_cache_neither_reads_nor_writes(fake, args, capsys, tmp_path):
    cache_dir = tmp_path / "cache"
    assert evaluate(args + ["--no-cache"], capsys)[0] == 0
    assert not cache_dir.exists()
    calls = _calls(fake)
    assert evaluate(args + ["--no-cache"], capsys)[0] == 0
    assert _calls(fake)[0] == 2 * calls[0]
    assert not cache_dir.exists()


# Each change must miss the cache on the side it concerns, and only there: the fake answers the
# same text whatever the settings, so a new candidate key gives the same answer and the judge's
# prompt, hence its key, is unchanged.
KEY_CHANGES = [
    pytest.param("--temperature", "0.1", (3, 0), id="temperature"),
    pytest.param("--max-tokens", "99", (3, 0), id="max_tokens"),
    pytest.param("--system-prompt", "Answer in one word.", (3, 0), id="system_prompt"),
    pytest.param("--model", "other-model", (3, 0), id="model"),
    pytest.param("--base-url", "localhost", (3, 0), id="server_url"),
    pytest.param("--judge-max-tokens", "50", (0, 3), id="judge_max_tokens"),
    pytest.param("--judge-temperature", "0.5", (0, 3), id="judge_temperature"),
    pytest.param("--judge-endpoint", "chat2", (0, 3), id="judge_endpoint"),
    pytest.param("--data", "one question changed", (1, 1), id="messages"),
]


@pytest.mark.parametrize(("flag", "value", "new_calls"), KEY_CHANGES)
def test_cache_key_covers_what_changes_a_reply(
    fake, args, capsys, tmp_path, flag, value, new_calls
):
    def calls() -> tuple[int, int]:
        models = [r.get("model") for r in fake.requests]
        candidate = sum(m in (MODEL, "other-model") for m in models)
        return candidate, len(models) - candidate

    fake.models.append("other-model")
    assert evaluate(args, capsys)[0] == 0
    before = calls()
    if value == "localhost":  # the same server under another name is another key
        value = fake.url.replace("127.0.0.1", "localhost")
    if value == "one question changed":
        path = _write_csv(tmp_path / "changed.csv", 3)
        path.write_text(path.read_text().replace("Question 1?", "Question one?"))
        value = str(path)
    code, _, err = evaluate(args + [flag, value], capsys)
    assert code == 0, err
    after = calls()
    assert (after[0] - before[0], after[1] - before[1]) == new_calls


def test_unreadable_cache_file_stops_with_a_clear_message(fake, args, capsys, tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "replies.sqlite").write_bytes(b"this is not a database" * 100)
    code, _, err = evaluate(args, capsys)
    assert code == 2
    assert "reply cache" in err and "--no-cache" in err and "Traceback" not in err
    assert fake.chat_calls == 0


# ---- the key and the store -------------------------------------------------------------------

BASE = Endpoint("http://127.0.0.1:1234/v1", "m", 0.7, 256)
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}]


@pytest.mark.parametrize(
    ("endpoint", "messages"),
    [
        pytest.param(Endpoint("http://127.0.0.1:9999/v1", "m", 0.7, 256), MESSAGES, id="url"),
        pytest.param(Endpoint(BASE.base_url, "m2", 0.7, 256), MESSAGES, id="model"),
        pytest.param(Endpoint(BASE.base_url, "m", 0.0, 256), MESSAGES, id="temperature"),
        pytest.param(Endpoint(BASE.base_url, "m", 0.7, 255), MESSAGES, id="max_tokens"),
        pytest.param(Endpoint(BASE.base_url, "m", 0.7, 256, {"seed": 1}), MESSAGES,
                     id="extra_params"),
        pytest.param(BASE, [{**MESSAGES[0], "content": "Be long."}, MESSAGES[1]],
                     id="system_prompt"),
        pytest.param(BASE, [MESSAGES[0], {**MESSAGES[1], "content": "Q!"}], id="user_message"),
        pytest.param(BASE, MESSAGES[1:], id="messages_dropped"),
        pytest.param(BASE, [MESSAGES[0], {**MESSAGES[1], "role": "assistant"}], id="role"),
    ],
)  # fmt: skip
def test_key_changes_with_every_input_of_the_reply(endpoint, messages):
    assert cache_key(endpoint, messages) != cache_key(BASE, MESSAGES)


def test_key_ignores_a_trailing_slash_and_is_stable():
    same = Endpoint(BASE.base_url + "/", "m", 0.7, 256)
    assert cache_key(same, MESSAGES) == cache_key(BASE, MESSAGES)
    assert cache_key(BASE, [dict(m) for m in MESSAGES]) == cache_key(BASE, MESSAGES)


class _Counting:
    def __init__(self) -> None:
        self.calls = 0

    def complete(self, messages: list[dict[str, str]]) -> ChatResponse:
        self.calls += 1
        return ChatResponse(f"reply {self.calls}", 3, 4, 0.5, "stop")


def test_cached_reply_keeps_text_usage_and_says_cached(tmp_path):
    inner = _Counting()
    client = CachedClient(inner, BASE, ReplyCache(tmp_path))
    fresh = client.complete(MESSAGES)
    hit = CachedClient(inner, BASE, ReplyCache(tmp_path)).complete(MESSAGES)  # a new process
    assert inner.calls == 1
    assert (hit.text, hit.prompt_tokens, hit.completion_tokens) == ("reply 1", 3, 4)
    assert not fresh.cached and hit.cached


def test_reply_stored_by_a_newer_version_with_more_fields_still_reads(tmp_path):
    cache = ReplyCache(tmp_path)
    with sqlite3.connect(cache.path) as conn:
        conn.execute(
            "INSERT INTO replies (key, response) VALUES (?, ?)",
            ("k", '{"text": "hi", "reasoning_tokens": 7, "latency_s": 0.1}'),
        )
    assert cache.get("k") == ChatResponse("hi", latency_s=0.1, cached=True)


def _integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def test_concurrent_threads_do_not_corrupt(tmp_path):
    cache = ReplyCache(tmp_path)
    threads, per_thread = 8, 150

    def write(t: int) -> None:
        for i in range(per_thread):
            cache.put(f"t{t}-{i}", ChatResponse(f"{t}:{i}", 1, 2, 0.01))
            cache.put("shared", ChatResponse(f"last from {t}"))  # the same key from all
            assert cache.get(f"t{t}-{i}").text == f"{t}:{i}"

    workers = [threading.Thread(target=write, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert _integrity(cache.path) == "ok"
    assert len(cache) == threads * per_thread + 1
    fresh = ReplyCache(tmp_path)
    assert all(
        fresh.get(f"t{t}-{i}").text == f"{t}:{i}" for t in range(threads) for i in range(0, 150, 7)
    )


def _process_writer(folder: str, worker: int, count: int, start: Any) -> None:
    start.wait()  # all processes open the cache and write at the same moment
    cache = ReplyCache(Path(folder))
    for i in range(count):
        cache.put(f"p{worker}-{i}", ChatResponse(f"{worker}:{i}", 1, 2, 0.01))
        cache.put("shared", ChatResponse(f"last from {worker}"))


def test_concurrent_processes_do_not_corrupt(tmp_path):
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
    processes, per_process = 4, 150
    start = ctx.Event()
    workers = [
        ctx.Process(target=_process_writer, args=(str(tmp_path), p, per_process, start))
        for p in range(processes)
    ]
    for w in workers:
        w.start()
    start.set()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * processes
    assert _integrity(tmp_path / "replies.sqlite") == "ok"
    cache = ReplyCache(tmp_path)
    assert len(cache) == processes * per_process + 1
    assert all(
        cache.get(f"p{p}-{i}").text == f"{p}:{i}"
        for p in range(processes)
        for i in range(per_process)
    )


# ---- a run killed half way -------------------------------------------------------------------

ROWS = 10


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig", [pytest.param(signal.SIGKILL, id="SIGKILL"), pytest.param(signal.SIGINT, id="SIGINT")]
)
def test_killed_run_resumes_asking_only_for_rows_not_stored(
    fake, run_args, tmp_path, capsys, tracking_uri, request, sig
):
    fake.reply = _answer
    fake.latency_s = 0.15
    data = _write_csv(tmp_path / "q.csv", ROWS)
    args = run_args + ["--data", str(data), "--concurrency", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "mlflow_evaluate.py"), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(fake.calls_for(MODEL)) < ROWS // 2:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the run never got half way"
            time.sleep(0.02)
        killed_at = len(fake.calls_for(MODEL))
        proc.send_signal(sig)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read()
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 130), output
    assert fake.calls_for(JUDGE) == []  # killed while answering
    stored = len(ReplyCache(tmp_path / "cache"))
    # Every answer received before the kill was on disk already: all but the one in flight.
    assert stored >= killed_at - 1
    rows_left = ROWS - stored
    assert 0 < rows_left < ROWS

    before = len(fake.calls_for(MODEL))
    code, _, err = evaluate(args, capsys)
    assert code == 0, err
    assert len(fake.calls_for(MODEL)) - before == rows_left
    assert len(fake.calls_for(JUDGE)) == ROWS
    metrics = _metrics(tracking_uri, request.node.name)
    assert metrics["candidate/failed_rows"] == 0
    assert metrics["answer_similarity/v1/unscored_ratio"] == 0.0


def test_server_id_replaces_the_url_in_the_key():
    """Regression: the embedded servers get a new port each run, so their URL in the key made
    every run miss the cache."""
    from localeval.calls.cache import cache_key
    from localeval.calls.client import Endpoint

    messages = [{"role": "user", "content": "q"}]
    a = Endpoint("http://127.0.0.1:4001/v1", "m", 0.0, 5, server_id="embedded|abc")
    b = Endpoint("http://127.0.0.1:4002/v1", "m", 0.0, 5, server_id="embedded|abc")
    c = Endpoint("http://127.0.0.1:4002/v1", "m", 0.0, 5, server_id="embedded|xyz")
    assert cache_key(a, messages) == cache_key(b, messages) != cache_key(c, messages)


def test_changing_the_model_behind_a_gateway_endpoint_invalidates_verdicts(fake, run_args, capsys):
    fake.gateway_models["chat"] = "judge-a"
    assert evaluate(run_args, capsys)[0] == 0
    assert len(fake.calls_for("chat")) == 2
    assert evaluate(run_args, capsys)[0] == 0
    assert len(fake.calls_for("chat")) == 2  # same judge model: verdicts from the cache
    fake.gateway_models["chat"] = "judge-b"  # `name:` changed in gateway_config.yaml
    assert evaluate(run_args, capsys)[0] == 0
    assert len(fake.calls_for("chat")) == 4  # a new judge grades again


@pytest.mark.parametrize("repeats", [1, 2])
def test_without_cache_calls_are_rows_times_one_plus_judges_times_repeats(
    fake, args, capsys, repeats
):
    """Regression: MLflow's first-row check of each metric asked the judge for row 1 twice."""
    extra = ["--no-cache", "--judge", "answer_similarity,answer_correctness"]
    code, _, err = evaluate(args + extra + ["--judge-repeats", str(repeats)], capsys)
    assert code == 0, err
    rows, judges = 3, 2
    assert fake.chat_calls == rows * (1 + judges * repeats)
