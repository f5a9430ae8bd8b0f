"""Judges through the AI Gateway inside `mlflow server` (`--judge-endpoint gateway:/NAME`): a
real server on SQLite, its endpoints created through its REST API in the test, the fake server
behind them as the judge's model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import VERDICT, evaluate
from fake_openai import FakeOpenAI
from mlflow_servers import create_endpoint, free_port

pytestmark = pytest.mark.slow

JUDGE_MODEL = "judge-model"  # the model name the server's endpoint asks its upstream for


@pytest.fixture(scope="module")
def judge_server() -> Iterator[FakeOpenAI]:
    """The candidate and the judge's model in one fake server; it also plays a YAML gateway
    (endpoint `chat`) for the comparison."""

    def reply(body: dict) -> str:
        return VERDICT if body["model"] in ("chat", JUDGE_MODEL) else "A fake answer."

    with FakeOpenAI(reply=reply, gateway_endpoints={"chat": "llm/v1/chat"}) as server:
        yield server


@pytest.fixture(scope="module")
def server(mlflow_ui: str, judge_server: FakeOpenAI) -> str:
    """The worker's `mlflow server` (on its SQLite store, see conftest.py), with two endpoints:
    `chat` on the fake judge, `down` on a port where nothing answers."""
    create_endpoint(mlflow_ui, "chat", judge_server.url, JUDGE_MODEL)
    create_endpoint(mlflow_ui, "down", f"http://127.0.0.1:{free_port()}/v1", JUDGE_MODEL)
    return mlflow_ui


def _args(judge_server: FakeOpenAI, server: str, tmp_path: Path, experiment: str) -> list[str]:
    return [
        "--stack", "external", "--model", "fake-model", "--base-url", judge_server.url,
        "--tracking-uri", server, "--experiment", experiment, "--no-cache",
        "--cache-dir", str(tmp_path / "cache"), "--max-retries", "0", "--quiet",
    ]  # fmt: skip


def test_a_run_judged_through_the_servers_gateway_logs_what_the_yaml_gateway_run_logs(
    judge_server, server, tmp_path, capsys, request
):
    import mlflow

    args = _args(judge_server, server, tmp_path, request.node.name)
    code, out, err = evaluate(args + ["--gateway-url", judge_server.root], capsys)
    assert code == 0, err
    code, out, err = evaluate(args + ["--judge-endpoint", "gateway:/chat"], capsys)
    assert code == 0, err
    assert "answer_similarity/v1  4" in out
    # The judge's calls reached the fake server through the MLflow server, as `judge-model`.
    assert judge_server.calls_for(JUDGE_MODEL)
    client = mlflow.MlflowClient(server)
    exp = client.get_experiment_by_name(request.node.name)
    yaml_run, server_run = client.search_runs(
        [exp.experiment_id], order_by=["attribute.start_time ASC"]
    )
    for key in ("answer_similarity/v1/mean", "answer_similarity/v1/unscored_ratio"):
        assert server_run.data.metrics[key] == yaml_run.data.metrics[key], key
    assert server_run.data.params["judge/answer_similarity"] == "chat (openai:judge-model)"
    traces = mlflow.search_traces(
        locations=[exp.experiment_id], run_id=server_run.info.run_id, return_type="list"
    )
    assert len(traces) == 2
    for trace in traces:
        (verdict,) = [a for a in trace.info.assessments if a.name == "answer_similarity"]
        assert verdict.value == 4 and "main points" in verdict.rationale


def test_a_missing_endpoint_or_its_upstream_down_stops_before_any_row(
    judge_server, server, tmp_path, capsys, request
):
    args = _args(judge_server, server, tmp_path, request.node.name)
    before = len(judge_server.calls_for("fake-model"))
    code, _, err = evaluate(args + ["--judge-endpoint", "gateway:/nope"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "has no endpoint 'nope'" in err and "'chat'" in err and "#/gateway" in err
    code, _, err = evaluate(args + ["--judge-endpoint", "gateway:/down"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "endpoint 'down'" in err and "judge-model" in err and "nothing answers there" in err
    assert len(judge_server.calls_for("fake-model")) == before  # no row was answered


def test_gateway_names_need_a_server():
    from localeval.config.settings import resolve
    from localeval.errors import ConfigError

    with pytest.raises(ConfigError, match="names no such server"):
        resolve(["--judge-endpoint", "gateway:/chat"], environ={})
    with pytest.raises(ConfigError, match="a run asks one gateway"):
        resolve(
            ["--judge", "answer_similarity@gateway:/chat", "--judge-endpoint", "chat",
             "--tracking-uri", "http://127.0.0.1:1"],
            environ={},
        )  # fmt: skip
    config = resolve(
        ["--judge-endpoint", "gateway:/chat"], environ={"MLFLOW_GATEWAY_URI": "http://h:5000/"}
    )
    assert (config.gateway_url, config.judge_endpoint) == ("http://h:5000/gateway/mlflow", "chat")


def test_our_scorer_asks_the_servers_gateway_inside_mlflow_genai_evaluate(server, request):
    import mlflow

    from localeval.scorers import judge

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(server)
    try:
        mlflow.set_experiment(request.node.name)
        data = [{"inputs": {"question": "What is MLflow?"}, "outputs": "A platform.",
                 "expectations": {"expected_response": "An ML lifecycle platform."}}]  # fmt: skip
        result = mlflow.genai.evaluate(
            data=data, scorers=[judge("answer_similarity", "gateway:/chat")]
        )
        assert result.metrics["answer_similarity/mean"] == 4
    finally:
        mlflow.set_tracking_uri(previous)
