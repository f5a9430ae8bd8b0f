"""--pairwise on a several-model run, against the fake server with scripted judges."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import VERDICT, evaluate

ANSWERS = {"fake-model": "weak answer", "mid-model": "good answer", "top-model": "best answer"}
RANK = {"weak answer": 0, "good answer": 1, "best answer": 2}
_SHOWN = re.compile(r"\[Answer ([AB])\]\n`{3,}\n(.*?)\n`{3,}", re.DOTALL)


def _fair(shown: dict[str, str]) -> str:
    """A judge that prefers the better answer wherever it is shown, with a reason."""
    better = max(shown, key=lambda k: RANK[shown[k]])
    return f"Answer {better} says more.\n[[{better}]]"


def _answers_shown(body) -> dict[str, str]:
    return dict(_SHOWN.findall(body["messages"][0]["content"]))


def _parent_metrics(tracking_uri, experiment):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parent.data.metrics, parent.data.params


def _serve(fake, judge):
    fake.models += ["mid-model", "top-model"]

    def reply(body):
        if body["model"] != "chat":
            return ANSWERS[body["model"]]
        shown = _answers_shown(body)
        return judge(shown) if shown else VERDICT  # the absolute judge beside it

    fake.reply = reply


def test_a_fair_judge_ranks_three_models_in_their_order(
    fake, run_args, capsys, tracking_uri, request, tmp_path
):
    _serve(fake, _fair)
    args = run_args + ["--model", "mid-model", "--model", "top-model", "--pairwise"]
    report, output = tmp_path / "report.html", tmp_path / "results.jsonl"
    code, out, err = evaluate(args + ["--report", str(report), "--output", str(output)], capsys)
    assert code == 0, err
    metrics, params = _parent_metrics(tracking_uri, request.node.name)
    assert params["pairwise/prompt_version"] == "answer_preference/v1"
    for a, b in (
        ("fake-model", "mid-model"),
        ("fake-model", "top-model"),
        ("mid-model", "top-model"),
    ):
        prefix = f"pairwise/{a}_vs_{b}"
        assert metrics[f"{prefix}/win_rate"] == 1.0, prefix  # b is better in every row
        assert metrics[f"{prefix}/consistency"] == 1.0
        assert metrics[f"{prefix}/first_position_rate"] == 0.5
        assert metrics[f"{prefix}/losses"] == 0 and metrics[f"{prefix}/unscored"] == 0
    bt = {m: metrics[f"pairwise/{m}/bt_score"] for m in ANSWERS}
    assert bt["fake-model"] < bt["mid-model"] < bt["top-model"]
    assert "mid-model vs fake-model: mid-model wins 100%" in out
    assert "Bradley-Terry strengths" in out
    # The report: a section per pair with its bar and figures; the exports: the same figures.
    page = report.read_text(encoding="utf-8")
    assert page.count('<svg class="winbar"') == 3 and "position consistency" in page
    assert "top-model vs fake-model" in page and "Rows the judge flipped on" not in page
    exported = json.loads(output.with_name("results.aggregates.json").read_text(encoding="utf-8"))
    (top,) = [h for h in exported["head_to_head"] if (h["a"], h["b"]) == ("mid-model", "top-model")]
    assert top["metrics"]["pairwise/mid-model_vs_top-model/win_rate"] == 1.0
    assert [s["version"] for s in exported["strengths"]] == ["top-model", "mid-model", "fake-model"]
    # Both orders of every pair and row were asked: 2 calls per pair and row.
    pairwise_calls = [b for b in fake.calls_for("chat") if _answers_shown(b)]
    rows = len(fake.calls_for("top-model"))  # one answer per row
    assert rows > 0 and len(pairwise_calls) == 3 * 2 * rows


def test_a_judge_that_always_picks_the_first_shown_is_caught(
    fake, run_args, capsys, tracking_uri, request, tmp_path
):
    _serve(fake, lambda shown: "The first one.\n[[A]]")
    report = tmp_path / "report.html"
    args = run_args + ["--model", "top-model", "--pairwise", "--report", str(report)]
    code, out, err = evaluate(args, capsys)
    assert code == 0, err
    metrics, _ = _parent_metrics(tracking_uri, request.node.name)
    prefix = "pairwise/fake-model_vs_top-model"
    assert metrics[f"{prefix}/consistency"] == 0.0
    assert metrics[f"{prefix}/first_position_rate"] == 1.0
    assert metrics[f"{prefix}/win_rate"] == 0.5  # every row a tie
    assert "agreed with itself across orders on 0%" in out
    assert "the judge's verdict followed the position on row(s) 1, 2" in out
    page = report.read_text(encoding="utf-8")
    assert "Rows the judge flipped on (2)" in page and "fake-model: The first one." in page


def test_an_unreadable_verdict_is_unscored_not_counted(
    fake, run_args, capsys, tracking_uri, request
):
    _serve(fake, lambda shown: "Both have merits; I cannot decide.")
    code, out, err = evaluate(run_args + ["--model", "top-model", "--pairwise"], capsys)
    assert code == 0, err
    metrics, _ = _parent_metrics(tracking_uri, request.node.name)
    prefix = "pairwise/fake-model_vs_top-model"
    assert metrics[f"{prefix}/unscored"] >= 1
    assert f"{prefix}/win_rate" not in metrics  # no row has a verdict: nothing made up
    assert "no row has a verdict" in out


def test_pairwise_needs_two_models(fake, run_args, capsys):
    code, _, err = evaluate(run_args + ["--pairwise"], capsys)
    assert code == 2
    assert "--pairwise compares versions head to head" in err and "Traceback" not in err


def test_against_the_baseline_run_and_the_gate(
    fake, run_args, capsys, tracking_uri, request, tmp_path
):
    import mlflow

    _serve(fake, _fair)
    assert evaluate(run_args, capsys)[0] == 0  # the baseline: "weak answer" on every row
    ANSWERS["fake-model"] = "best answer"  # the new version
    try:
        code, out, err = evaluate(
            run_args + ["--baseline", "last", "--pairwise", "--no-cache"], capsys
        )
        assert code == 0, err
        assert "Head to head (each row judged in both orders" in out
        assert "fake-model vs baseline" in out and "wins 100%" in out, out[-1500:]
        client = mlflow.MlflowClient(tracking_uri)
        exp = client.get_experiment_by_name(request.node.name)
        old, newest = client.search_runs([exp.experiment_id], order_by=["attribute.start_time ASC"])
        # Two runs of one model are told apart in the run lists by their default names.
        assert old.info.run_name != newest.info.run_name
        assert newest.info.run_name.startswith("fake-model ")
        metrics = newest.data.metrics
        assert metrics["pairwise/baseline_vs_fake-model/win_rate"] == 1.0
        assert metrics["pairwise/baseline_vs_fake-model/consistency"] == 1.0
        assert metrics["pairwise/baseline_vs_fake-model/consistency_ci_low"] == 1.0
        # The rows as a table artifact, both orders' verdicts and explanations per row.
        path = client.download_artifacts(
            newest.info.run_id, "pairwise/baseline_vs_fake-model.json", str(tmp_path)
        )
        table = json.loads(Path(path).read_text(encoding="utf-8"))
        columns = table["columns"]
        rows = [dict(zip(columns, r)) for r in table["data"]]
        assert len(rows) == 2 and all(r["verdict"] == "fake-model" for r in rows)
        assert (
            rows[0]["consistent"] is True
            and "says more" in rows[0]["fake-model first: explanation"]
        )
        # Each row's two verdicts as assessments on the new run's trace of that row.
        traces = mlflow.search_traces(
            locations=[exp.experiment_id], run_id=newest.info.run_id, return_type="list"
        )
        assert len(traces) == 2
        for trace in traces:
            prefs = [a for a in trace.info.assessments if a.name == "answer_preference vs baseline"]
            assert sorted(a.metadata["order"] for a in prefs) == [
                "baseline shown first",
                "fake-model shown first",
            ]
            assert {a.value for a in prefs} == {"fake-model"}
            assert all("says more" in a.rationale for a in prefs)
        # A head-to-head gate like any metric gate: this judge agrees with itself.
        ANSWERS["fake-model"] = "good answer"
        gate = ["--baseline", "last", "--pairwise", "--run-name", "gated", "--no-cache"]
        code, _, err = evaluate(
            run_args + gate + ["--fail-under", "pairwise/baseline_vs_fake-model/consistency=0.7"],
            capsys,
        )
        assert code == 0, err
        newest = client.search_runs([exp.experiment_id], order_by=["attribute.start_time DESC"])[0]
        assert newest.info.run_name == "gated"
        # Worse than the last run, head to head: --fail-if-worse exits 4, everything logged.
        ANSWERS["fake-model"] = "weak answer"
        args = run_args + ["--baseline", "last", "--pairwise", "--fail-if-worse", "--no-cache"]
        code, out, err = evaluate(args, capsys)
        assert code == 4, out[-2500:]
        assert "loses head to head" in err
    finally:
        ANSWERS["fake-model"] = "weak answer"


def test_a_head_to_head_gate_fails_on_an_inconsistent_judge_and_a_misspelt_one_is_refused(
    fake, run_args, capsys
):
    _serve(fake, lambda shown: "[[A]]")
    pair = ["--model", "top-model", "--pairwise", "--fail-under"]
    code, _, err = evaluate(
        run_args + pair + ["pairwise/fake-model_vs_top-model/consistency=0.7"], capsys
    )
    assert code == 4
    assert "pairwise/fake-model_vs_top-model/consistency = 0 < 0.7" in err
    code, _, err = evaluate(
        run_args + pair + ["pairwise/fake-model_vs_top-model/consistensy=0.7"], capsys
    )
    assert code == 2 and "Traceback" not in err
    assert "Did you mean pairwise/fake-model_vs_top-model/consistency" in err
    code, _, err = evaluate(run_args + ["--fail-under", "pairwise/a_vs_b/win_rate=0.5"], capsys)
    assert code == 2 and "only with --pairwise" in err


def _known_answers(tmp_path, preferences):
    rows = [
        {"inputs": f"Question {i}?", "ground_truth": "ref", "answer_a": a, "answer_b": b,
         "human_preference": pref}
        for i, (a, b, pref) in enumerate(preferences)
    ]  # fmt: skip
    path = tmp_path / "known.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_two_answer_columns_and_a_persons_preference_measure_the_judge(
    fake, run_args, capsys, tmp_path, tracking_uri, request
):
    _serve(fake, _fair)
    # The person prefers the better answer on 3 rows, calls one a tie, and is wrong on one.
    data = _known_answers(tmp_path, [
        ("best answer", "weak answer", "A"), ("weak answer", "good answer", "B"),
        ("good answer", "best answer", "b"), ("weak answer", "best answer", "tie"),
        ("best answer", "good answer", "B"),
    ])  # fmt: skip
    args = run_args + ["--data", str(data), "--answer-col", "answer_a", "--answer-col",
                       "answer_b", "--pairwise"]  # fmt: skip
    code, out, err = evaluate(args, capsys)
    assert code == 0, err
    assert not fake.calls_for("fake-model")  # no candidate call
    metrics, _ = _parent_metrics(tracking_uri, request.node.name)
    prefix = "pairwise/answers_answer_a_vs_answers_answer_b"
    assert metrics[f"{prefix}/human_rows"] == 5
    assert metrics[f"{prefix}/human_agreement"] == 3 / 5  # the tie and the wrong one missed
    assert metrics[f"{prefix}/human_agreement_without_ties"] == 3 / 4
    assert (
        metrics[f"{prefix}/human_agreement_ci_low"]
        <= 0.6
        <= metrics[f"{prefix}/human_agreement_ci_high"]
    )
    assert "agreed with people on 60%" in out and "75%" in out


def test_a_preference_that_is_not_a_b_or_tie_names_the_row(fake, run_args, capsys, tmp_path):
    data = _known_answers(tmp_path, [("x", "y", "A"), ("x", "y", "first")])
    args = run_args + ["--data", str(data), "--answer-col", "answer_a", "--answer-col",
                       "answer_b", "--pairwise"]  # fmt: skip
    code, _, err = evaluate(args, capsys)
    assert code == 2 and "Traceback" not in err
    assert "row 2, column 'human_preference': 'first' is not a preference" in err


def test_a_custom_pairwise_rubric_from_the_judges_file(
    fake, run_args, capsys, tmp_path, tracking_uri, request
):
    prompts = []

    _serve(fake, _fair)
    judge = fake.reply
    fake.reply = lambda body: (prompts.append(body["messages"][0]["content"]), judge(body))[1]
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text(
        "pairwise:\n  name: terse_preference\n  version: v2\n"
        "  criteria: Choose the answer that says the right thing in fewer words.\n",
        encoding="utf-8",
    )
    args = run_args + ["--model", "top-model", "--pairwise", "--judges-file", str(rubric)]
    code, _, err = evaluate(args, capsys)
    assert code == 0, err
    metrics, params = _parent_metrics(tracking_uri, request.node.name)
    assert params["pairwise/prompt_version"] == "terse_preference/v2"
    assert metrics["pairwise/fake-model_vs_top-model/win_rate"] == 1.0
    shown = [p for p in prompts if "[Answer A]" in p]
    assert shown and all("in fewer words" in p and "more helpful" not in p for p in shown)
    rubric.write_text("pairwise:\n  name: answer_preference\n  criteria: x\n", encoding="utf-8")
    code, _, err = evaluate(args, capsys)
    assert code == 2 and "key pairwise.name" in err and "Traceback" not in err
