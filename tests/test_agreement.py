"""Can this judge be trusted? Agreement with people's grades (from the data or from MLflow's UI),
answers from the data, and metrics that cannot be computed said with their reason."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, evaluate

from localeval.judging.agreement import human_agreement
from localeval.stats import cohen_kappa_quadratic

# Judge and person on six rows, plus an unlabelled row and a labelled row the judge did not score.
JUDGE = [5, 4, 3, 2, 1, 5, 1, None]
PERSON = [5, 3, 3, 1, 2, 4, None, 3]


def test_agreement_equals_the_hand_computed_values():
    a = human_agreement(JUDGE, PERSON)
    m = a.metrics
    # Quadratic weights (i-j)^2/16 on grades 1-5. Observed: 4 pairs one grade apart -> 4/16.
    # Expected: judge marginal (1,1,1,1,2), person (1,1,2,1,1): sum a_i b_j (i-j)^2 = 144, over
    # n=6 and 16 -> 1.5. Kappa = 1 - 0.25/1.5 = 5/6.
    assert m["human_kappa"] == pytest.approx(5 / 6)
    assert m["human_labelled_rows"] == 6  # the unlabelled row and the unscored one are left out
    assert m["human_exact"] == pytest.approx(2 / 6)  # (5,5) and (3,3)
    assert m["human_within_1"] == 1.0
    assert m["human_mean_diff"] == pytest.approx(2 / 6)  # 0+1+0+1-1+1 over 6: lenient
    assert a.matrix[4] == (0, 0, 0, 1, 1)  # judge 5: person 4 once, person 5 once
    assert sum(map(sum, a.matrix)) == 6
    assert [(i, j, p) for i, j, p in a.differ][:1] == [(1, 4, 3)]  # widest gap, first row first


def test_kappa_interval_is_the_percentile_bootstrap_over_labelled_rows():
    a = human_agreement(JUDGE, PERSON)
    js, ps = [5, 4, 3, 2, 1, 5], [5, 3, 3, 1, 2, 4]
    rng = np.random.default_rng(0)  # the same seed and resamples, computed here independently
    kappas = []
    for _ in range(2000):
        pick = rng.integers(0, 6, size=6)
        k = cohen_kappa_quadratic([js[i] for i in pick], [ps[i] for i in pick])
        if not math.isnan(k):
            kappas.append(k)
    low, high = np.quantile(kappas, [0.025, 0.975])
    assert a.metrics["human_kappa_ci_low"] == pytest.approx(low)
    assert a.metrics["human_kappa_ci_high"] == pytest.approx(high)
    assert low <= a.metrics["human_kappa"] <= high


def test_kappa_without_variance_is_undefined_with_its_reason():
    a = human_agreement([4, 4, 4], [4, 4, 4])
    assert "human_kappa" not in a.metrics
    assert "one single grade" in a.undefined["human_kappa"]
    assert a.metrics["human_exact"] == 1.0
    assert human_agreement([4, 4], [None, None]) is None  # nobody labelled a row


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    path = tmp_path / "labelled.csv"
    rows = ["inputs,ground_truth,answer,human_answer_similarity"]
    for i, (j, p) in enumerate(zip(JUDGE, PERSON), start=1):
        rows.append(f"Question {i}?,Target {i}.,Answer {i} grade {j},{'' if p is None else p}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _judge_by_answer(body: dict) -> str:
    prompt = body["messages"][0]["content"]
    grade = next((g for i, g in enumerate(JUDGE, start=1) if f"Answer {i} grade" in prompt), None)
    return "I cannot tell." if grade is None else f"score: {grade}\njustification: ok"


def _run(tracking_uri: str, experiment: str):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], order_by=["start_time DESC"])


def test_answers_and_labels_from_the_data_no_candidate_call(
    fake, run_args, labelled, capsys, tracking_uri, request, tmp_path
):
    fake.reply = _judge_by_answer
    report = tmp_path / "report.html"
    args = ["--data", str(labelled), "--answer-col", "answer", "--report", str(report)]
    code, out, err = evaluate(run_args + args, capsys)
    assert code == 0, err
    assert fake.calls_for("fake-model") == []  # zero candidate calls
    assert len(fake.calls_for("chat")) == len(JUDGE)
    _, (run,) = _run(tracking_uri, request.node.name)
    m = run.data.metrics
    assert m["answer_similarity/v1/human_kappa"] == pytest.approx(5 / 6)
    assert m["answer_similarity/v1/human_labelled_rows"] == 6
    assert m["answer_similarity/v1/human_mean_diff"] == pytest.approx(2 / 6)
    assert "answer_similarity/v1/human_kappa_ci_low" in m
    assert "answer_similarity/v1 vs people on 6 labelled rows: kappa 0.833" in out
    page = report.read_text(encoding="utf-8")
    assert "Judge against people" in page and "Where the judge and the person differ most" in page
    assert run.data.params["model"] == "answers:answer"


@pytest.mark.parametrize(("gate", "code"), [("0.9", 4), ("0.8", 0)])
def test_human_kappa_gate(fake, run_args, labelled, capsys, gate, code):
    fake.reply = _judge_by_answer
    args = ["--data", str(labelled), "--answer-col", "answer",
            "--fail-under", f"answer_similarity/v1/human_kappa={gate}"]  # fmt: skip
    got, _, err = evaluate(run_args + args, capsys)
    assert got == code, err
    if code:
        assert "answer_similarity/v1/human_kappa" in err


def test_human_col_names_the_column_and_the_judge(fake, run_args, labelled, capsys, tmp_path):
    fake.reply = _judge_by_answer
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(
        labelled.read_text().replace("human_answer_similarity", "grade"), encoding="utf-8"
    )
    base = run_args + ["--data", str(renamed), "--answer-col", "answer"]
    code, out, _ = evaluate(base + ["--human-col", "answer_similarity=grade"], capsys)
    assert code == 0 and "vs people on 6 labelled rows" in out
    code, _, err = evaluate(base + ["--human-col", "nope=grade"], capsys)
    assert code == 2 and "no judge 'nope'" in err
    code, _, err = evaluate(base + ["--human-col", "missing"], capsys)
    assert code == 2 and "'missing'" in err and "Traceback" not in err


def test_agreement_reads_human_feedback_logged_through_mlflow(
    fake, run_args, capsys, tracking_uri, request, tmp_path
):
    import mlflow
    from mlflow.entities import AssessmentSource

    data = tmp_path / "q.csv"
    data.write_text(
        "inputs,ground_truth\n" + "".join(f"Q{i}?,T{i}.\n" for i in range(1, 5)), "utf-8"
    )
    grades = {"T1.": 5, "T2.": 2, "T3.": 4, "T4.": 1}  # by the target in the judge's prompt

    def reply(body: dict) -> str:
        if body["model"] != "chat":
            return "An answer."
        prompt = body["messages"][0]["content"]
        grade = next(g for target, g in grades.items() if f"value:\n{target}" in prompt)
        return f"score: {grade}\njustification: ok"

    fake.reply = reply
    assert evaluate(run_args + ["--data", str(data)], capsys)[0] == 0
    _, (run,) = _run(tracking_uri, request.node.name)
    mlflow.set_tracking_uri(tracking_uri)
    traces = mlflow.search_traces(
        locations=[run.info.experiment_id], run_id=run.info.run_id, return_type="list"
    )
    person = {"Q1?": 5, "Q2?": 3, "Q3?": 4}  # Q4 left unlabelled
    mlflow.flush_trace_async_logging()
    for trace in traces:
        question = trace.data.spans[0].inputs["inputs"]
        if question in person:
            mlflow.log_feedback(
                trace_id=trace.info.trace_id,
                name="answer_similarity",
                value=person[question],
                source=AssessmentSource(source_type="HUMAN", source_id="reviewer@example.com"),
            )
    calls = fake.chat_calls
    code, out, err = evaluate(run_args + ["--agreement", run.info.run_id], capsys)
    assert code == 0, err
    assert fake.chat_calls == calls  # no LLM call
    _, runs = _run(tracking_uri, request.node.name)
    assert len(runs) == 1  # logged to that run, no new one
    m = runs[0].data.metrics
    assert m["answer_similarity/v1/human_labelled_rows"] == 3
    expected = cohen_kappa_quadratic([5, 2, 4], [5, 3, 4])
    assert m["answer_similarity/v1/human_kappa"] == pytest.approx(expected)
    assert m["answer_similarity/v1/human_mean_diff"] == pytest.approx(-1 / 3)
    assert "vs people on 3 labelled rows" in out


def test_undefined_metrics_are_printed_with_their_reason(fake, run_args, capsys, request):
    replies = iter(["score: 4", "no idea"] * 10)  # the second verdict of each row never parses
    fake.reply = lambda body: next(replies) if body["model"] == "chat" else "Answer."
    args = ["--judge-repeats", "2", "--concurrency", "1", "--verbose"]  # every metric listed
    code, out, _ = evaluate(run_args + args, capsys)
    assert code == 0
    assert "answer_similarity/v1/self_consistency" in out
    assert "— (no row has two scored verdicts of one endpoint" in out
    assert re.search(r"answer_similarity/v1/unscored_verdict_ratio +0\.5\n", out)  # all asked
    assert re.search(r"answer_similarity/v1/unscored_ratio +0\n", out)  # every row has a score


def test_agreement_between_endpoints_without_variance_says_why(fake, run_args, capsys):
    fake.reply = lambda body: "score: 4" if body["model"] in ("chat", "chat2") else "A."
    code, out, _ = evaluate(run_args + ["--judge", "answer_similarity@chat+chat2"], capsys)
    assert code == 0
    assert "answer_similarity/v1/agreement_kappa" in out and "one single grade" in out


def test_identical_scores_over_ten_rows_warn(fake, run_args, capsys):
    fake.reply = lambda body: "score: 1" if body["model"] == "chat" else "Answer."
    data = str(ROOT / "data" / "sample_qa.csv")
    code, out, _ = evaluate(run_args + ["--data", data], capsys)
    assert code == 0
    assert (
        "warning: answer_similarity/v1 gave every one of the 10 scored rows the same score" in out
    )
