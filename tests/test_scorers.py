"""Our judges as MLflow scorers (localeval.scorers): `mlflow.genai.evaluate` with `judge(...)`
against the fake server playing the gateway, each row's verdict an assessment on its trace, an
unscored verdict an assessment error; a custom judge from examples/judges.yaml; unknown names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, VERDICT
from fake_openai import Fault

from localeval.config.settings import resolve
from localeval.errors import ConfigError
from localeval.scorers import judge

ROWS = [
    {
        "inputs": {"question": "What is MLflow?"},
        "outputs": "An open-source platform for the ML lifecycle.",
        "expectations": {"expected_response": "MLflow manages the machine learning lifecycle."},
    },
    {
        "inputs": {"question": "What is Spark?"},
        "outputs": {"response": "A distributed compute engine."},
        "expectations": {"expected_response": "Spark is a distributed processing engine."},
    },
]


@pytest.fixture
def experiment(tracking_uri: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """An experiment of its own in the session's SQLite store, the tracking URI restored after."""
    import mlflow

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield mlflow.create_experiment(f"scorers-{request.node.name}")
    finally:
        mlflow.set_tracking_uri(before)


def _evaluate(
    experiment_id: str, data: list[dict], scorers: list, **predict: Any
) -> tuple[dict, dict]:
    """mlflow.genai.evaluate in its own run: (its metrics, question -> that row's trace)."""
    import mlflow

    with mlflow.start_run(experiment_id=experiment_id) as run:
        result = mlflow.genai.evaluate(data=data, scorers=scorers, **predict)
    traces = mlflow.search_traces(
        locations=[experiment_id], run_id=run.info.run_id, return_type="list"
    )
    return result.metrics, {json.loads(t.data.request)["question"]: t for t in traces}


def _feedback(trace, name: str):
    (found,) = trace.search_assessments(name, type="feedback")
    return found


def test_builtin_judge_grades_each_row_as_an_assessment_on_its_trace(fake, experiment):
    metrics, traces = _evaluate(
        experiment, ROWS, [judge("answer_similarity", gateway_url=fake.root)]
    )
    assert set(traces) == {"What is MLflow?", "What is Spark?"}  # one trace per row
    for trace in traces.values():
        feedback = _feedback(trace, "answer_similarity")
        assert feedback.value == 4
        assert feedback.rationale == VERDICT.partition("justification: ")[2]
        assert feedback.error is None
        assert (feedback.source.source_type, feedback.source.source_id) == ("LLM_JUDGE", "chat")
        assert feedback.metadata["metric"] == "answer_similarity/v1"
        assert feedback.metadata["prompt_version"].startswith("answer_similarity/v1|")
    # Our prompt, with the answer and the reference, once per row to the gateway's endpoint.
    calls = fake.calls_for("chat")
    assert len(calls) == 2
    prompts = [c["messages"][0]["content"] for c in calls]
    assert any("A distributed compute engine." in p and "distributed processing" in p
               for p in prompts)  # fmt: skip
    assert {(c["temperature"], c["max_tokens"]) for c in calls} == {(0.0, 120)}  # a run's
    assert metrics["answer_similarity/mean"] == 4.0


def test_a_verdict_without_a_score_is_an_assessment_error_not_a_score(fake, experiment):
    # The second row's prompt (its reference) gets a reply without a score.
    fake.script_for("distributed processing", "I would rather not say.", model="chat")
    scorer = judge("answer_similarity", gateway_url=fake.root)
    metrics, traces = _evaluate(experiment, ROWS, [scorer])
    assert _feedback(traces["What is MLflow?"], "answer_similarity").value == 4
    unscored = _feedback(traces["What is Spark?"], "answer_similarity")
    assert unscored.value is None
    assert unscored.error.error_code == "parse_failure"
    assert "I would rather not say." in unscored.error.error_message
    assert unscored.source.source_id == "chat"
    assert metrics["answer_similarity/mean"] == 4.0  # the unscored row is not averaged in


def test_a_custom_judge_from_a_judges_file_is_a_scorer(fake, experiment):
    fake.reply = lambda body: "score: 5\njustification: Warm and respectful."
    scorer = judge("politeness", gateway_url=fake.root, judges_file=ROOT / "examples/judges.yaml")
    rows = [{"inputs": row["inputs"]} for row in ROWS]  # the answers from the app this time

    def app(question: str) -> str:
        return f"Gladly: {question.lower()}"

    _, traces = _evaluate(experiment, rows, [scorer], predict_fn=app)
    for trace in traces.values():
        feedback = _feedback(trace, "politeness")
        assert (feedback.value, feedback.rationale) == (5, "Warm and respectful.")
        assert feedback.metadata["metric"] == "politeness/v1"
    prompts = [c["messages"][0]["content"] for c in fake.calls_for("chat")]
    assert len(prompts) == 2 and all("Politeness" in p for p in prompts)
    assert any("Gladly: what is spark?" in p for p in prompts)


def test_unknown_judge_names_the_known_ones():
    with pytest.raises(ConfigError, match="Unknown judge 'kindness'") as raised:
        judge("kindness", judges_file=ROOT / "examples/judges.yaml")
    for name in ("answer_similarity", "faithfulness", "language_match", "politeness"):
        assert name in str(raised.value)
    with pytest.raises(ValueError, match="answer_correctness"):
        judge("kindness")


def test_a_bad_judges_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        judge("politeness", judges_file=tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("judges:\n  - name: politeness\n")
    with pytest.raises(ConfigError, match=r"judges\[0\]"):
        judge("politeness", judges_file=bad)


def test_what_the_row_lacks_is_an_assessment_error_without_a_call(fake):
    similarity = judge("answer_similarity", gateway_url=fake.root)
    no_reference = similarity(inputs={"question": "Q?"}, outputs="A.", expectations={})
    assert no_reference.error.error_code == "missing_reference"
    assert "expected_response" in no_reference.error.error_message
    faithful = judge("faithfulness", gateway_url=fake.root)
    assert faithful(inputs={"question": "Q?"}, outputs="A.").error.error_code == "missing_context"
    relevance = judge("answer_relevance", gateway_url=fake.root)  # it reads the question
    assert relevance(inputs={"a": 1, "b": 2}, outputs="A.").error.error_code == "missing_question"
    assert fake.calls_for("chat") == []
    # No output at all (the app failed): the candidate's failure, as a run records it.
    failed = similarity(inputs={"query": "Q?"}, outputs=None, expectations={"ground_truth": "T"})
    assert failed.error.error_code == "candidate_failed"


def test_row_mapping_context_and_other_input_names(fake):
    faithful = judge("faithfulness", gateway_url=fake.root)
    feedback = faithful(
        inputs={"query": "Where is it?", "context": ["Passage one.", "Passage two."]},
        outputs={"answer": "In passage one."},
    )
    assert feedback.value == 4
    (prompt,) = [c["messages"][0]["content"] for c in fake.calls_for("chat")]
    assert "Passage one.\n\nPassage two." in prompt and "In passage one." in prompt


def test_a_failed_judge_call_is_a_judge_error(fake):
    fake.reply = Fault.context_length()  # a 400: not retried, so the test need not wait
    similarity = judge("answer_similarity", gateway_url=fake.root)
    feedback = similarity(inputs="Q?", outputs="A.", expectations={"ground_truth": "T."})
    assert feedback.value is None and feedback.error.error_code == "judge_error"
    assert "HTTP 400" in feedback.error.error_message


def test_the_default_gateway_is_the_runners(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLFLOW_DEPLOYMENTS_TARGET", raising=False)
    assert judge("answer_similarity").gateway_url == resolve([], {}).gateway_url
    monkeypatch.setenv("MLFLOW_DEPLOYMENTS_TARGET", "http://gateway.example:7000/")
    expected = resolve([], {"MLFLOW_DEPLOYMENTS_TARGET": "http://gateway.example:7000/"})
    assert judge("answer_similarity").gateway_url == expected.gateway_url


def test_verdicts_are_kept_in_the_reply_cache(fake, tmp_path: Path):
    row = {"inputs": {"question": "Q?"}, "outputs": "A.", "expectations": {"ground_truth": "T."}}
    first = judge("answer_similarity", gateway_url=fake.root, cache_dir=tmp_path / "cache")
    second = judge("answer_similarity", gateway_url=fake.root, cache_dir=tmp_path / "cache")
    assert first(**row).value == second(**row).value == 4
    assert len(fake.calls_for("chat")) == 1
