"""Conversations: multi-turn rows answered turn by turn with the dialogue so far, each turn judged
in its context, grouped as an MLflow session; rows without a reference not applicable."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import mlflow
import pytest
from conftest import evaluate
from fake_openai import FakeOpenAI, Fault

ROOT = Path(__file__).resolve().parent.parent
CONVERSATIONS = [
    {
        "id": "ui",
        "turns": ["What is MLflow?", "How do I start its UI?", "And on another port?"],
        "ground_truth": ["A platform.", "mlflow ui", ""],
    },
    {"id": "tea", "system_prompt": "Be brief.", "turns": ["Green or black tea?", "At night?"]},
]


def _write(path: Path, records: list[Any]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    return path


def _replies(body: dict[str, Any]) -> str:
    """The candidate answers each question with a text naming it; the judge gives a 4, or a 2
    on the tea conversation's last turn."""
    if body.get("model") in ("chat", "chat2"):
        low = "At night?" in body["messages"][0]["content"]
        return f"score: {2 if low else 4}\njustification: Fine."
    return f"Answer to: {body['messages'][-1]['content']}"


def _run(tracking_uri: str, experiment: str) -> Any:
    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([found.experiment_id])
    return run


def test_each_turn_is_asked_with_the_dialogue_so_far(
    fake: FakeOpenAI, run_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.reply = _replies
    data = _write(tmp_path / "c.jsonl", CONVERSATIONS)
    code, out, err = evaluate(
        [*run_args, "--data", str(data), "--judge", "answer_relevance"], capsys
    )
    assert code == 0, out + err
    asked = [c["messages"] for c in fake.calls_for("fake-model")]
    assert len(asked) == 5
    third = next(m for m in asked if m[-1]["content"] == "And on another port?")
    assert [(m["role"], m["content"]) for m in third[1:]] == [
        ("user", "What is MLflow?"),
        ("assistant", "Answer to: What is MLflow?"),
        ("user", "How do I start its UI?"),
        ("assistant", "Answer to: How do I start its UI?"),
        ("user", "And on another port?"),
    ]
    assert third[0]["role"] == "system" and third[0]["content"] != "Be brief."
    night = next(m for m in asked if m[-1]["content"] == "At night?")
    assert night[0] == {"role": "system", "content": "Be brief."}
    # The judge of turn 3 reads the dialogue before it, the earlier answers fenced as data, after
    # the fixed rubric (prefix-first: the dialogue grows at the prompt's end).
    (judged,) = fake.calls_with("### User:\nHow do I start its UI?", model="chat")
    prompt = judged["messages"][0]["content"]
    assert "### User:\nHow do I start its UI?" in prompt
    assert "```\nAnswer to: How do I start its UI?\n```" in prompt
    assert prompt.index("Metric definition") < prompt.index("What is MLflow?")
    # A first turn's judge sees no dialogue; the second turn's sees the first.
    tea = [c["messages"][0]["content"] for c in fake.calls_with("Green or black tea?", "chat")]
    assert sorted("conversation so far" in p for p in tea) == [False, True]
    assert "[3] ui 3/3 And on another port?" in out
    assert "on c.jsonl (2 conversations, 5 turns)" in out


def test_a_failed_turn_fails_the_later_turns_with_its_reason(
    fake: FakeOpenAI, run_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.reply = _replies
    fake.script_for("What is MLflow?", Fault.server_error(500, "boom"), model="fake-model")
    data = _write(tmp_path / "c.jsonl", CONVERSATIONS)
    rows = tmp_path / "rows.jsonl"
    args = [*run_args, "--data", str(data), "--judge", "answer_relevance", "--output", str(rows)]
    code, out, err = evaluate(args, capsys)
    assert code == 3, out + err  # rows failed
    records = [json.loads(line) for line in rows.read_text().splitlines()]
    assert [(r["conversation"], r["turn"], r["turns"]) for r in records[:2]] == [
        ("ui", 1, 3),
        ("ui", 2, 3),
    ]
    errors = [r["candidate_error"] for r in records]
    assert "HTTP 500" in errors[0]
    assert errors[1] == errors[2] == f"turn 1 failed: {errors[0]}"
    assert errors[3:] == ["", ""]  # the other conversation goes on
    asked = [c["messages"][-1]["content"] for c in fake.calls_for("fake-model")]
    assert sorted(asked) == ["At night?", "Green or black tea?", "What is MLflow?"]


def test_per_turn_metrics_and_one_session_per_conversation(
    fake: FakeOpenAI,
    run_args: list[str],
    tmp_path: Path,
    tracking_uri: str,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake.reply = _replies
    data = _write(tmp_path / "c.jsonl", CONVERSATIONS)
    args = [*run_args, "--data", str(data), "--judge", "answer_relevance,answer_similarity"]
    code, out, err = evaluate([*args, "--report", str(tmp_path / "r.html")], capsys)
    assert code == 0, out + err
    run = _run(tracking_uri, request.node.name)
    metrics = run.data.metrics
    rel = "answer_relevance/v1"
    assert metrics[f"{rel}/turn_1/mean"] == 4
    assert metrics[f"{rel}/turn_2/mean"] == 3  # ui's 4 and tea's 2
    assert metrics[f"{rel}/turn_3/mean"] == 4
    assert metrics[f"{rel}/conversation_mean"] == pytest.approx((4 + 3) / 2)
    assert metrics[f"{rel}/last_turn_mean"] == 3  # ui's turn 3 (4), tea's turn 2 (2)
    assert metrics[f"{rel}/not_applicable_rows"] == 0
    assert run.data.params["judge_dialogue_version"] == "dialogue-v1"
    # answer_similarity needs a reference: ui's turns 1 and 2 have one.
    assert metrics["answer_similarity/v1/not_applicable_rows"] == 3
    assert metrics["answer_similarity/v1/turn_2/mean"] == 4
    assert "answer_similarity/v1/turn_3/mean" not in metrics
    assert "2 of 2 (3 not applicable)" in out
    assert f"{rel} turns 1, 2, 3: 4, 3, 4; conversation mean 3.5, last turn mean 3" in out
    mlflow.set_tracking_uri(tracking_uri)
    traces = mlflow.search_traces(
        locations=[run.info.experiment_id], run_id=run.info.run_id, return_type="list"
    )
    sessions: dict[str, list[str]] = {}
    for trace in traces:
        meta = trace.info.trace_metadata
        sessions.setdefault(meta["mlflow.trace.session"], []).append(meta["localeval.turn"])
    assert sorted(map(sorted, sessions.values())) == [["1", "2"], ["1", "2", "3"]]
    assert all(key.startswith(("ui ", "tea ")) for key in sessions)
    html = (tmp_path / "r.html").read_text()
    assert "ui 3/3" in html and "n/a" in html


@pytest.mark.parametrize(
    ("record", "column", "words"),
    [
        pytest.param({"turns": "not a list"}, "turns", "not a JSON list", id="not_a_list"),
        pytest.param({"turns": 3}, "turns", "not a list", id="a_number"),
        pytest.param({"turns": []}, "turns", "empty", id="empty_list"),
        pytest.param({"turns": ["Hi?", 7]}, "turns", "turn 2 is 7", id="non_string_turn"),
        pytest.param(
            {"turns": ["Hi?", "And?"], "ground_truth": ["Hello."]},
            "ground_truth",
            "1 reference answers for 2 turns",
            id="references_of_another_length",
        ),
        pytest.param({"inputs": "Hi?"}, "inputs", "mixes single questions", id="mixed"),
        pytest.param(
            {"id": "a", "turns": ["Again?"]}, "id", "names an earlier conversation", id="same_id"
        ),
    ],
)
def test_a_bad_conversation_row_is_named_exit_2(
    run_args: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    record: dict[str, Any],
    column: str,
    words: str,
) -> None:
    data = _write(tmp_path / "c.jsonl", [{"id": "a", "turns": ["Fine?"]}, record])
    args = [*run_args, "--data", str(data), "--judge", "answer_relevance"]
    code, out, err = evaluate(args, capsys)
    assert code == 2, out + err
    assert "row 2" in err and repr(column) in err and words in err, err
    assert "Traceback" not in err


def test_a_turns_column_in_csv_holds_json_and_can_be_renamed(
    fake: FakeOpenAI, run_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.reply = _replies
    data = tmp_path / "c.csv"
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dialogue", "ground_truth"])
        writer.writerow([json.dumps(["What is MLflow?", "And its UI?"]), '["A platform.", ""]'])
    args = [*run_args, "--data", str(data), "--turns-col", "dialogue"]
    code, out, err = evaluate(args, capsys)
    assert code == 0, out + err
    (second,) = fake.calls_with("And its UI?", model="fake-model")
    assert [m["content"] for m in second["messages"][1:]] == [
        "What is MLflow?",
        "Answer to: What is MLflow?",
        "And its UI?",
    ]
    assert "1 of 1 (1 not applicable)" in out


def test_judge_turns_last_grades_only_the_last_turn(
    fake: FakeOpenAI, run_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.reply = _replies
    data = _write(tmp_path / "c.jsonl", CONVERSATIONS)
    args = [*run_args, "--data", str(data), "--judge", "answer_relevance"]
    code, out, err = evaluate([*args, "--judge-turns", "last"], capsys)
    assert code == 0, out + err
    judged = [c["messages"][0]["content"] for c in fake.calls_for("chat")]
    assert len(judged) == 2
    assert "2 of 2 (3 not applicable)" in out


def test_rows_without_a_reference_are_not_applicable_unless_required(
    fake: FakeOpenAI,
    run_args: list[str],
    tmp_path: Path,
    tracking_uri: str,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "qa.csv"
    data.write_text("inputs,ground_truth\nWhat is MLflow?,A platform.\nWhat is Spark?,\n")
    judges = ["--judge", "answer_similarity,answer_relevance"]
    code, out, err = evaluate([*run_args, "--data", str(data), *judges], capsys)
    assert code == 0, out + err
    metrics = _run(tracking_uri, request.node.name).data.metrics
    assert metrics["answer_similarity/v1/not_applicable_rows"] == 1
    assert metrics["answer_similarity/v1/unscored_ratio"] == 0
    assert metrics["answer_relevance/v1/not_applicable_rows"] == 0
    # answer_similarity was asked about row 1 only; answer_relevance about both.
    assert len(fake.calls_with("What is Spark?", model="chat")) == 1
    assert len(fake.calls_with("What is MLflow?", model="chat")) == 2
    assert "1 of 1 (1 not applicable)" in out
    code, out, err = evaluate(
        [*run_args, "--data", str(data), *judges, "--require-reference"], capsys
    )
    assert code == 2, out + err
    assert "row 2, column 'ground_truth': empty" in err and "Traceback" not in err


def test_a_second_identical_run_asks_the_candidate_nothing(
    fake: FakeOpenAI, run_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.reply = _replies
    data = _write(tmp_path / "c.jsonl", CONVERSATIONS)
    args = [*run_args, "--data", str(data), "--judge", "answer_relevance"]
    code, out, err = evaluate(args, capsys)
    assert code == 0, out + err
    before = len(fake.calls_for("fake-model"))
    assert before == 5
    code, out, err = evaluate(args, capsys)
    assert code == 0, out + err
    assert len(fake.calls_for("fake-model")) == before
    assert len(fake.calls_for("chat")) == 5  # nor the judge: every verdict is cached too


def test_pairwise_is_refused_on_conversations(
    run_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _write(tmp_path / "c.jsonl", CONVERSATIONS)
    args = [*run_args, "--data", str(data), "--judge", "answer_relevance", "--pairwise"]
    code, out, err = evaluate([*args, "--baseline", "last"], capsys)
    assert code == 2, out + err
    assert "--pairwise compares answers to single questions" in err and "Traceback" not in err


def test_a_shard_never_splits_a_conversation(tmp_path: Path) -> None:
    from localeval.dataset import load_dataset

    path = _write(tmp_path / "c.jsonl", CONVERSATIONS)
    parts = [load_dataset(path, need_target=False, shard=(k, 2)).samples for k in (1, 2)]
    assert [[s.id for s in part] for part in parts] == [
        ["ui/1", "ui/2", "ui/3"],
        ["tea/1", "tea/2"],
    ]


def test_the_bundled_sample_reads_as_conversations() -> None:
    from localeval.dataset import load_dataset

    dataset = load_dataset(ROOT / "data" / "conversations.jsonl", every_target=False)
    turns = [s.turn for s in dataset.samples]
    counts = {t.conversation: t.count for t in turns if t is not None}
    assert len(counts) == 6 and set(counts.values()) == {2, 3}
    assert any(s.target is None for s in dataset.samples)
    assert any(s.target for s in dataset.samples)


def test_fail_under_takes_a_conversation_figure(
    fake: FakeOpenAI, run_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.reply = _replies
    data = _write(tmp_path / "c.jsonl", CONVERSATIONS)
    args = [*run_args, "--data", str(data), "--judge", "answer_relevance"]
    gate = ["--fail-under", "answer_relevance/v1/last_turn_mean=3.5"]
    code, out, err = evaluate([*args, *gate], capsys)
    assert code == 4, out + err  # the last turns' mean is 3 (4 and 2)
    assert "last_turn_mean" in out + err


@pytest.mark.slow
def test_two_bundled_conversations_end_to_end_on_the_embedded_stack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two conversations of data/conversations.jsonl (one English with a reference on 2 of its 3
    turns, one Japanese without any) on the real llama.cpp server and gateway: every turn
    answered with its dialogue, per-turn figures logged, one session per conversation. Two, not
    all six: the 270M stand-in answers and judges under a grammar at ~3 tokens/s here, and the
    whole sample took 65 s (the closing note of issue 25 has its figures)."""
    lines = (ROOT / "data" / "conversations.jsonl").read_text(encoding="utf-8").splitlines()
    picked = [line for line in lines if json.loads(line)["id"] in ("sqlite-file", "ja-tea")]
    data = tmp_path / "two.jsonl"
    data.write_text("\n".join(picked) + "\n", encoding="utf-8")
    # Short answers and verdicts: the point is the path (turns, sessions), not the stand-in.
    args = ["--stack", "embedded", "--data", str(data), "--max-tokens", "16",
            "--judge-max-tokens", "40", "--quiet"]  # fmt: skip
    # In-process, in tmp_path (conftest): ./mlflow.db is there.
    code, out, err = evaluate(args, capsys)
    # The 270M stand-in's verdicts may fail to parse (unscored, exit 0) but no turn may fail.
    assert code == 0, out[-3000:] + err[-3000:]
    assert "answer_similarity/v1 turns 1, 2" in out
    client = mlflow.MlflowClient("sqlite:///" + str(tmp_path / "mlflow.db"))
    experiment = client.get_experiment_by_name("local-llm-judge")
    (run,) = client.search_runs([experiment.experiment_id])
    metrics = run.data.metrics
    # Three turns have no reference: sqlite-file's third, ja-tea's two.
    assert metrics["answer_similarity/v1/not_applicable_rows"] == 3
    assert metrics["candidate/failed_rows"] == 0
    mlflow.set_tracking_uri("sqlite:///" + str(tmp_path / "mlflow.db"))
    traces = mlflow.search_traces(
        locations=[experiment.experiment_id], run_id=run.info.run_id, return_type="list"
    )
    assert len(traces) == 5
    sessions = {t.info.trace_metadata["mlflow.trace.session"] for t in traces}
    assert len(sessions) == 2
