"""Every row in MLflow's GenAI views: a trace per row linked to its run, its spans, the verdicts as
feedback and the ground truth as an expectation; and --baseline, row by row against a past run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import VERDICT, evaluate
from fake_openai import Fault

ROWS = 4


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "q.csv"
    path.write_text(
        "inputs,ground_truth,topic\n"
        + "".join(f"Question {i}?,Target {i}.,t{i}\n" for i in range(1, ROWS + 1)),
        encoding="utf-8",
    )
    return path


def _answer(body: dict) -> str:
    if body["model"] in ("chat", "chat2"):
        return VERDICT
    return f"Answer to {body['messages'][-1]['content']}"


def _run(tracking_uri: str, experiment: str):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    return client, exp.experiment_id, runs


def _traces(tracking_uri: str, experiment_id: str, run_id: str) -> list:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    traces = mlflow.search_traces(locations=[experiment_id], run_id=run_id, return_type="list")
    return sorted(traces, key=lambda t: int(t.info.trace_metadata["localeval.row"]))


def _table(client, run_id: str) -> list[dict]:
    table = json.loads(
        Path(client.download_artifacts(run_id, "eval_results_table.json")).read_text()
    )
    return [dict(zip(table["columns"], row)) for row in table["data"]]


def test_one_trace_per_row_with_request_response_and_spans(
    fake, run_args, data, capsys, tracking_uri, request
):
    fake.reply = _answer
    fake.gateway_models["chat"] = "judge-upstream"
    code, _, err = evaluate(run_args + ["--data", str(data), "--max-tokens", "77"], capsys)
    assert code == 0, err
    _client, experiment_id, (run,) = _run(tracking_uri, request.node.name)
    traces = _traces(tracking_uri, experiment_id, run.info.run_id)
    assert len(traces) == ROWS
    for i, trace in enumerate(traces, start=1):
        assert trace.info.state.value == "OK"
        assert json.loads(trace.info.request_preview) == {
            "inputs": f"Question {i}?",
            "topic": f"t{i}",
        }
        assert trace.info.response_preview == f"Answer to Question {i}?"
        assert trace.info.trace_metadata["mlflow.sourceRun"] == run.info.run_id
        spans = {s.name: s for s in trace.data.spans}
        assert set(spans) == {f"row {i}", "candidate", "judge answer_similarity/v1 @chat"}
        candidate = spans["candidate"]
        assert candidate.attributes["model"] == "fake-model"
        assert candidate.attributes["base_url"] == fake.url
        assert candidate.attributes["max_tokens"] == 77
        assert candidate.inputs["messages"][-1] == {"role": "user", "content": f"Question {i}?"}
        assert candidate.outputs == f"Answer to Question {i}?"
        usage = candidate.attributes["mlflow.chat.tokenUsage"]
        assert usage["output_tokens"] == 4  # "Answer to Question i?"
        judge = spans["judge answer_similarity/v1 @chat"]
        assert judge.attributes["endpoint"] == "chat"
        assert judge.attributes["upstream_model"] == "openai:judge-upstream"
        assert judge.attributes["prompt_layout"] == "prefix-v2"  # the default
        assert judge.attributes["prompt_version"] == "answer_similarity/v1|prefix-v2|fenced-v1|text"
        assert judge.outputs == VERDICT  # the raw reply
        assert f"Answer to Question {i}?" in judge.inputs["messages"][0]["content"]
        assert judge.parent_id == spans[f"row {i}"].span_id == candidate.parent_id


def test_verdicts_are_feedback_and_the_ground_truth_an_expectation(
    fake, run_args, data, capsys, tracking_uri, request
):
    replies = {
        f"Answer to Question {i}?": f"score: {i}\njustification: because {i}" for i in (1, 2)
    }
    replies["Answer to Question 3?"] = "I cannot decide."  # unparseable: unscored

    def reply(body: dict) -> str:
        if body["model"] == "chat":
            prompt = body["messages"][0]["content"]
            return next((v for k, v in replies.items() if k in prompt), VERDICT)
        return _answer(body)

    fake.reply = reply
    code, _, err = evaluate(run_args + ["--data", str(data)], capsys)
    assert code == 0, err
    client, experiment_id, (run,) = _run(tracking_uri, request.node.name)
    table = _table(client, run.info.run_id)
    for trace, row in zip(_traces(tracking_uri, experiment_id, run.info.run_id), table):
        feedback = {a.name: a for a in trace.info.assessments if a.feedback is not None}
        (verdict,) = feedback.values()
        assert verdict.name == "answer_similarity"
        assert verdict.metadata["metric"] == "answer_similarity/v1"
        assert verdict.metadata["mlflow.assessment.sourceRunId"] == run.info.run_id
        assert verdict.source.source_type == "LLM_JUDGE"
        assert verdict.source.source_id == "chat (openai:chat)"
        assert verdict.value == row["answer_similarity/v1/score"]  # the same per-row score
        if row["inputs"] == "Question 3?":
            assert verdict.value is None  # never a made-up value
            assert verdict.error.error_code == "parse_failure"
            assert verdict.rationale == "I cannot decide."
        else:
            number = row["inputs"].split()[1].rstrip("?")
            expected = {"1": 1.0, "2": 2.0}.get(number, 4.0)
            assert verdict.value == expected and verdict.error is None
        (truth,) = [a for a in trace.info.assessments if a.expectation is not None]
        assert truth.name == "expected_response" and truth.value == row["ground_truth"]


def test_failed_candidate_call_is_a_trace_with_an_error_status(
    fake, run_args, data, capsys, tracking_uri, request
):
    fake.reply = _answer
    fake.script_for("Question 2?", Fault.server_error(500, "model crashed"), model="fake-model")
    code, _, _ = evaluate(run_args + ["--data", str(data)], capsys)
    assert code == 3
    _, experiment_id, (run,) = _run(tracking_uri, request.node.name)
    trace = _traces(tracking_uri, experiment_id, run.info.run_id)[1]
    assert trace.info.state.value == "ERROR"
    assert "model crashed" in trace.info.response_preview
    spans = {s.name: s for s in trace.data.spans}
    assert spans["candidate"].status.status_code.value == "ERROR"
    assert "model crashed" in spans["candidate"].status.description
    assert "judge answer_similarity/v1 @chat" not in spans  # no judge call without an answer
    (verdict,) = [a for a in trace.info.assessments if a.feedback is not None]
    assert verdict.value is None and verdict.error.error_code == "candidate_failed"


def test_repeats_and_endpoints_each_appear_with_the_combined_score(
    fake, run_args, data, capsys, tracking_uri, request
):
    fake.reply = lambda body: {"chat": "score: 4", "chat2": "score: 2"}.get(
        body["model"], "An answer."
    )
    args = ["--data", str(data), "--judge", "answer_similarity@chat+chat2", "--judge-repeats", "2"]
    code, _, err = evaluate(run_args + args, capsys)
    assert code == 0, err
    _, experiment_id, (run,) = _run(tracking_uri, request.node.name)
    for trace in _traces(tracking_uri, experiment_id, run.info.run_id):
        feedback = {a.name: a.value for a in trace.info.assessments if a.feedback is not None}
        assert feedback == {
            "answer_similarity": 3.0,
            "answer_similarity [chat 1]": 4.0,
            "answer_similarity [chat 2]": 4.0,
            "answer_similarity [chat2 1]": 2.0,
            "answer_similarity [chat2 2]": 2.0,
        }
        assert len([s for s in trace.data.spans if s.name.startswith("judge")]) == 4


def test_run_is_marked_as_an_evaluation_run_with_the_model_as_input(
    fake, run_args, capsys, tracking_uri, request
):
    fake.reply = _answer
    assert evaluate(run_args, capsys)[0] == 0
    client, _, (run,) = _run(tracking_uri, request.node.name)
    assert run.data.tags["mlflow.runType"] == "genai_evaluate"
    # MLflow's UI lists a run with a model *output* under Training runs only.
    assert not run.outputs.model_outputs
    full = client.get_run(run.info.run_id)
    (model_input,) = full.inputs.model_inputs
    assert client.get_logged_model(model_input.model_id).name == "model"


def test_no_traces_writes_none(fake, run_args, capsys, tracking_uri, request):
    fake.reply = _answer
    assert evaluate(run_args + ["--no-traces"], capsys)[0] == 0
    _, experiment_id, (run,) = _run(tracking_uri, request.node.name)
    assert _traces(tracking_uri, experiment_id, run.info.run_id) == []


# ---- --baseline -----------------------------------------------------------------------------


def _scores(fake, by_row: dict[int, int]) -> None:
    """The judge gives row i the score by_row[i] (default 3)."""

    def reply(body: dict) -> str:
        if body["model"] != "chat":
            return _answer(body)
        prompt = body["messages"][0]["content"]
        row = next(i for i in range(1, ROWS + 1) if f"Answer to Question {i}?" in prompt)
        return f"score: {by_row.get(row, 3)}\njustification: ok"

    fake.reply = reply


@pytest.mark.parametrize(
    ("before", "after", "code", "verdict"),
    [
        pytest.param(5, 1, 4, "worse", id="worse_exits_4"),
        pytest.param(1, 5, 0, "better", id="better_passes"),
        pytest.param(3, 3, 0, "no difference", id="same_passes"),
    ],
)
def test_baseline_last_and_fail_if_worse(
    fake, run_args, data, capsys, tracking_uri, request, before, after, code, verdict
):
    args = run_args + ["--data", str(data), "--no-cache"]
    _scores(fake, dict.fromkeys(range(1, ROWS + 1), before))
    assert evaluate(args, capsys)[0] == 0
    _, _, (first,) = _run(tracking_uri, request.node.name)
    _scores(fake, dict.fromkeys(range(1, ROWS + 1), after))
    got, out, err = evaluate(args + ["--baseline", "last", "--fail-if-worse"], capsys)
    assert got == code, err
    _client, _, (latest, _) = _run(tracking_uri, request.node.name)
    assert latest.data.params["baseline_run_id"] == first.info.run_id
    diff = after - before
    metrics = latest.data.metrics
    assert metrics["vs_baseline/answer_similarity/v1/mean_diff"] == diff
    assert metrics["vs_baseline/answer_similarity/v1/rows"] == ROWS
    line = f"answer_similarity/v1 {diff:+g} [{diff:+g}, {diff:+g}] over {ROWS} rows: {verdict}"
    assert line in out
    if code == 4:
        assert "--fail-if-worse" in err and "worse than baseline" in err


def test_baseline_last_skips_other_data_and_comparison_parents(
    fake, run_args, data, capsys, tracking_uri, request, tmp_path
):
    fake.reply = _answer
    fake.models.append("fake-model-b")
    assert evaluate(run_args + ["--data", str(data)], capsys)[0] == 0
    _, _, (wanted,) = _run(tracking_uri, request.node.name)
    other = tmp_path / "other.csv"
    other.write_text("inputs,ground_truth\nQuestion 9?,Target 9.\n", encoding="utf-8")
    assert evaluate(run_args + ["--data", str(other)], capsys)[0] == 0  # newer, other data
    two = run_args + ["--data", str(other), "--model", "fake-model-b"]
    assert evaluate(two, capsys)[0] == 0  # a parent run and two children, other data
    code, out, err = evaluate(run_args + ["--data", str(data), "--baseline", "last"], capsys)
    assert code == 0, err
    _, _, runs = _run(tracking_uri, request.node.name)
    assert runs[0].data.params["baseline_run_id"] == wanted.info.run_id
    assert f"({wanted.info.run_id[:8]})" in out


@pytest.mark.parametrize(
    ("second", "needle"),
    [
        pytest.param(["--data", "OTHER"], "was made on other data", id="other_dataset"),
        pytest.param(["--judge-format", "json"], "asked judge answer_similarity/v1 as",
                     id="other_judge_version"),
    ],
)  # fmt: skip
def test_baseline_refuses_what_does_not_compare(
    fake, run_args, data, capsys, tracking_uri, request, tmp_path, second, needle
):
    fake.reply = _answer
    assert evaluate(run_args + ["--data", str(data)], capsys)[0] == 0
    _, _, (first,) = _run(tracking_uri, request.node.name)
    other = tmp_path / "other.csv"
    other.write_text("inputs,ground_truth\nQuestion 9?,Target 9.\n", encoding="utf-8")
    second = [str(other) if a == "OTHER" else a for a in second]
    args = run_args + ["--data", str(data), *second, "--baseline", first.info.run_id]
    calls = fake.chat_calls
    code, _, err = evaluate(args, capsys)
    assert code == 2 and needle in err and first.info.run_id in err
    assert "Traceback" not in err and fake.chat_calls == calls  # refused before any call


def test_baseline_unknown_run_and_fail_if_worse_alone_exit_2(fake, run_args, capsys):
    code, _, err = evaluate(run_args + ["--baseline", "0123456789abcdef"], capsys)
    assert code == 2 and "no such run" in err
    code, _, err = evaluate(run_args + ["--fail-if-worse"], capsys)
    assert code == 2 and "--baseline" in err
    assert fake.chat_calls == 0


# ---- our SQL writes against MLflow's own -----------------------------------------------------


def _built_rows():
    """Rows of every kind a run writes: answered and scored, failed, unscored, repeated on two
    endpoints, with context, metadata and non-ASCII text."""
    from localeval.types import Answer, Call, Judgement, RowResult, Sample, Score, Verdict

    at = 1_700_000_000.0
    ok = Score(4.0, "Close to the target.", None, "score: 4\njustification: Close.")
    unscored = Score(None, "no score in the reply", "parse_failure", "I cannot decide.")
    no_answer = Score(None, "the candidate produced no answer", "candidate_failed")

    def verdict(endpoint: str, repeat: int, score: Score, tokens: int | None = 30) -> Verdict:
        return Verdict(endpoint, repeat, score, Call(at + 1, 0.5, tokens, 5))

    return [
        RowResult(0, Sample("a", "Qu'est-ce que MLflow ? ✓", "Une plateforme."),
                  Answer("Une plateforme « ML ».", None, Call(at, 1.0, 12, 7)),
                  {"answer_similarity/v1": Judgement((verdict("chat", 0, ok),))}),
        RowResult(1, Sample("b", "Question 2?", "Target 2.", "Some context.", {"topic": "t"}),
                  Answer(None, "HTTP 500: model crashed", Call(at, 2.0)),
                  {"answer_similarity/v1": Judgement((Verdict("chat", 0, no_answer),))}),
        RowResult(2, Sample("c", "Question 3?"),
                  Answer("An answer.", None, Call(at, 1.0, None, None, cached=True)),
                  {"answer_similarity/v1": Judgement((verdict("chat", 0, unscored, None),))}),
        RowResult(3, Sample("d", "Question 4?", "Target 4."),
                  Answer("Another answer.", None, Call(at, 1.0, 10, 3)),
                  {"answer_similarity/v1": Judgement(tuple(
                      verdict(e, r, ok) for e in ("chat", "chat2") for r in (0, 1)))}),
    ]  # fmt: skip


def test_written_traces_read_back_through_mlflow_public_api(tmp_path):
    """Traces written whole (`mlflow_internals.TraceStore`) read back through MLflow's public
    search: spans, assessments with their scores or errors, the run they came from."""
    import mlflow

    from localeval.tracking.mlflow_internals import TraceStore
    from localeval.tracking.traces import TraceSettings, build, prompts_of

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("x", artifact_location=str(tmp_path / "a"))
    run_id = client.create_run(experiment).info.run_id
    settings = TraceSettings(
        run_id, experiment, "m", "http://127.0.0.1:1/v1", "Be brief.",
        {"temperature": 0.0, "max_tokens": 64}, {"chat": "up", "chat2": "up2"}, "prefix-v2",
        "digest", {"k": "v"},
    )  # fmt: skip

    def prompt(row, key, verdict):
        return f"Grade {row.answer.text}"

    built = [build(row, settings, prompts_of(row, prompt)) for row in _built_rows()]
    TraceStore(uri).write(experiment, built)
    client.link_traces_to_run([info.trace_id for info, _ in built], run_id)

    traces = client.search_traces(experiment_ids=[experiment], run_id=run_id, max_results=10)
    by_row = {t.info.trace_metadata["localeval.row"]: t for t in traces}
    assert sorted(by_row) == ["1", "2", "3", "4"]
    assert [len(by_row[r].data.spans) for r in "1234"] == [3, 2, 3, 6]
    first = by_row["1"]
    assert first.info.trace_metadata["mlflow.sourceRun"] == run_id
    assert first.data.spans[0].start_time_ns == int(1_700_000_000.0 * 1e9)  # the call's own clock
    similarity = [a for a in first.info.assessments if a.name == "answer_similarity"]
    assert [a.value for a in similarity] == [4.0]
    assert similarity[0].rationale == "Close to the target."
    expected = [a for a in first.info.assessments if a.name == "expected_response"]
    assert [a.value for a in expected] == ["Une plateforme."]
    (unread,) = [a for a in by_row["3"].info.assessments if a.name == "answer_similarity"]
    assert unread.value is None and unread.error.error_code == "parse_failure"
    assert by_row["2"].info.state.value == "ERROR"  # the candidate's call failed
    both = {a.name for a in by_row["4"].info.assessments}
    assert "answer_similarity [chat2 2]" in both  # each endpoint and repeat, beside the combined


def _writer_settings(tmp_path: Path):
    import mlflow

    from localeval.tracking.traces import TraceSettings

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("x", artifact_location=str(tmp_path / "a"))
    run_id = client.create_run(experiment).info.run_id
    settings = TraceSettings(
        run_id, experiment, "m", "http://127.0.0.1:1/v1", "Be brief.", {}, {"chat": "up"},
        "prefix-v2", "digest",
    )  # fmt: skip
    return uri, client, settings


def _grade_prompt(row, key, verdict) -> str:
    return f"Grade {row.answer.text} ({key} #{verdict.repeat + 1})"


def test_a_big_runs_traces_written_by_a_second_process_read_back_the_same(tmp_path):
    """The writer of big runs: rows and their judge prompts go through a pipe to a process of
    its own, which writes and links the traces; the run gets their ids back."""
    import os

    from localeval.tracking.trace_writer import TraceWriter

    uri, client, settings = _writer_settings(tmp_path)
    writer = TraceWriter(uri, settings, _grade_prompt, separate_process=True)
    assert writer.child_pid not in (None, os.getpid())
    for row in _built_rows():
        writer.put(row)
    assert writer.close() is None
    traces = client.search_traces(
        experiment_ids=[settings.experiment_id], run_id=settings.run_id, max_results=10
    )
    assert sorted(t.info.trace_id for t in traces) == sorted(writer.trace_ids.values())
    assert sorted(writer.trace_ids) == [0, 1, 2, 3]
    by_row = {t.info.trace_metadata["localeval.row"]: t for t in traces}
    assert [len(by_row[r].data.spans) for r in "1234"] == [3, 2, 3, 6]
    (judge_span,) = [s for s in by_row["1"].data.spans if s.name.startswith("judge ")]
    # The prompt rendered in the run's process reached the span the child wrote.
    assert judge_span.inputs == {
        "messages": [
            {"role": "user", "content": "Grade Une plateforme « ML ». (answer_similarity/v1 #1)"}
        ]
    }
    assert [a.value for a in by_row["1"].info.assessments if a.name == "answer_similarity"] == [4]


def test_the_trace_process_killed_is_named_and_claims_no_trace(tmp_path):
    """Its death is a note of the run (the results stand without traces), naming the process."""
    import os
    import signal

    from localeval.tracking.trace_writer import TraceWriter

    uri, _, settings = _writer_settings(tmp_path)
    writer = TraceWriter(uri, settings, _grade_prompt, separate_process=True)
    os.kill(writer.child_pid, signal.SIGKILL)
    for row in _built_rows():
        writer.put(row)
    error = writer.close()
    assert error is not None
    assert f"the trace writer process we started (pid {writer.child_pid})" in error
    assert "exit code -9" in error and writer.trace_ids == {}


def test_a_row_the_pipe_cannot_carry_is_a_note_not_a_crash(tmp_path):
    """A row that does not pickle (here an object in its metadata) stops the traces, not the
    run: the reason is returned for the run's note, and the writer process is let go."""
    from dataclasses import replace

    from localeval.tracking.trace_writer import TraceWriter

    uri, _, settings = _writer_settings(tmp_path)
    writer = TraceWriter(uri, settings, _grade_prompt, separate_process=True)
    row = _built_rows()[0]
    writer.put(replace(row, sample=replace(row.sample, metadata={"handle": lambda: None})))
    error = writer.close()
    assert error is not None and error.startswith("rows not sent to the trace writer process")
    assert writer.trace_ids == {}
