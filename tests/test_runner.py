"""The runner core against the fake server: what was sent, what was logged, what was printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, evaluate
from fake_openai import FakeOpenAI


def _run(tracking_uri: str, experiment: str):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id])
    return client, run


def test_candidate_requests_carry_model_max_tokens_and_messages(fake, run_args, capsys):
    code, out, _ = evaluate(run_args + ["--max-tokens", "33", "--temperature", "0.2"], capsys)
    assert code == 0, out
    calls = fake.calls_for("fake-model")
    assert len(calls) == 2  # the article's two questions
    for body in calls:
        # Regression: langchain-openai 1.x sends only max_completion_tokens, which
        # llama-cpp-python ignores; the limit must arrive as max_tokens.
        assert body["max_tokens"] == 33
        assert body["temperature"] == 0.2
        assert body["messages"][0] == {
            "role": "system",
            "content": "Answer the following question in two sentences",
        }
        assert body["messages"][1]["role"] == "user"
    assert {c["messages"][1]["content"] for c in calls} == {"What is MLflow?", "What is Spark?"}


def test_judge_goes_to_gateway_endpoint_with_mlflow_prompt(fake, run_args, capsys):
    code, _, _ = evaluate(run_args, capsys)
    assert code == 0
    judge_calls = fake.calls_for("chat")
    assert len(judge_calls) == 2
    prompt = judge_calls[0]["messages"][0]["content"]
    assert "answer_similarity" in prompt and "A fake answer." in prompt
    assert "Apache Spark is an open-source" in "".join(
        c["messages"][0]["content"] for c in judge_calls
    )
    # The default judge budget, sized to a verdict (issue 12: 200 before).
    assert judge_calls[0]["max_tokens"] == 120 and judge_calls[0]["temperature"] == 0.0


def test_run_logs_metrics_params_table_and_model(fake, run_args, tracking_uri, capsys, request):
    code, out, _ = evaluate(run_args, capsys)
    assert code == 0
    client, run = _run(tracking_uri, request.node.name)
    metrics = run.data.metrics
    assert metrics["answer_similarity/v1/mean"] == 4.0
    assert metrics["answer_similarity/v1/unscored_ratio"] == 0.0
    assert metrics["exact_match/v1"] == 0.0
    assert "flesch_kincaid_grade_level/v1/mean" in metrics
    assert metrics["completion_tokens/total"] == 6.0  # "A fake answer." is 3 tokens, twice
    assert run.data.params["model"] == "fake-model"
    assert run.data.params["max_tokens"] == "256"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "eval_results_table.json" in artifacts
    table = json.loads(
        Path(client.download_artifacts(run.info.run_id, "eval_results_table.json")).read_text()
    )
    assert "answer_similarity/v1/justification" in table["columns"]
    # The printed table shows each row in full with its score and justification.
    assert "What is Spark?" in out and "answer_similarity = 4" in out
    assert "covers the main points" in out and "mlflow ui --backend-store-uri" in out


def test_unparseable_verdict_keeps_judge_text_and_counts_unscored(
    fake, run_args, capsys, request, tracking_uri
):
    fake.reply = lambda body: "I think it is fine." if body["model"] == "chat" else "Answer."
    code, out, _ = evaluate(run_args, capsys)
    assert code == 0
    _, run = _run(tracking_uri, request.node.name)
    assert run.data.metrics["answer_similarity/v1/unscored_ratio"] == 1.0
    assert "answer_similarity/v1/mean" not in run.data.metrics  # never a silent default grade
    assert "unscored" in out and "I think it is fine." in out


def test_api_key_never_reaches_mlflow(fake, run_args, tracking_uri, capsys, request, monkeypatch):
    secret = "sk-test-SECRET-4242"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    code, _, _ = evaluate(run_args, capsys)
    assert code == 0
    assert fake.headers[0]["authorization"] == f"Bearer {secret}"  # it was used...
    client, run = _run(tracking_uri, request.node.name)
    assert secret not in json.dumps(run.data.params) + json.dumps(run.data.tags)
    root = Path(client.download_artifacts(run.info.run_id, ""))
    for path in root.rglob("*"):  # ...and is nowhere in the logged model or artifacts
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_placeholder_key_when_environment_has_none(fake, run_args, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, _, _ = evaluate(run_args, capsys)
    assert code == 0  # the article's api_key=None raised here
    assert fake.headers[0]["authorization"] == "Bearer local-no-key"


def test_logging_the_model_makes_no_llm_call(fake, tracking_uri):
    import mlflow

    from localeval.calls.client import Runtime
    from localeval.candidate.model import log_candidate
    from localeval.candidate.settings import CandidateSettings

    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = mlflow.set_experiment("log-only").experiment_id
    settings = CandidateSettings(fake.url, "fake-model", "s", 0.0, 5)
    info = log_candidate(settings, Runtime(), experiment_id)
    assert fake.chat_calls == 0
    signature = mlflow.models.get_model_info(info.model_uri).signature
    assert signature.inputs.input_names() == ["inputs"]
    # The same candidate again is the same logged model; another setting is another one.
    assert log_candidate(settings, Runtime(), experiment_id).model_id == info.model_id
    other = CandidateSettings(fake.url, "fake-model", "s", 0.3, 5)
    assert log_candidate(other, Runtime(), experiment_id).model_id != info.model_id


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        pytest.param(
            ["--model", "other-model"], "does not serve model 'other-model'", id="unknown_model"
        ),
        pytest.param(["--judge-endpoint", "nope"], "has no endpoint 'nope'", id="no_endpoint"),
    ],
)
def test_preflight_names_the_problem_and_exits_2(fake, run_args, capsys, extra, needle):
    code, _, err = evaluate(run_args + extra, capsys)
    assert code == 2
    assert needle in err and "Traceback" not in err
    assert fake.chat_calls == 0  # nothing was asked, nothing was logged


def test_failed_rows_are_recorded_and_exit_3(fake, run_args, capsys, tracking_uri, request):
    from fake_openai import Fault

    fake.script = [Fault(status=500)]  # the first candidate call fails; retries are off
    code, out, err = evaluate(run_args, capsys)
    assert code == 3
    assert "FAILED" in out and "row(s) failed" in err
    _, run = _run(tracking_uri, request.node.name)
    assert run.data.metrics["candidate/failed_rows"] == 1
    assert run.data.metrics["answer_similarity/v1/unscored_ratio"] == 0.5


def test_sample_data_files_load():
    from localeval import load_dataset

    for name in ("article_qa.csv", "sample_qa.csv", "rag_qa.jsonl"):
        assert load_dataset(ROOT / "data" / name).samples


def test_unused_fake_is_quiet():
    with FakeOpenAI() as server:
        assert server.chat_calls == 0
