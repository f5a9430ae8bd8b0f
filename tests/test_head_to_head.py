"""--pairwise on a several-model run, against the fake server with scripted judges."""

from __future__ import annotations

import re

from conftest import VERDICT, evaluate

ANSWERS = {"fake-model": "weak answer", "mid-model": "good answer", "top-model": "best answer"}
RANK = {"weak answer": 0, "good answer": 1, "best answer": 2}
_SHOWN = re.compile(r"\[Answer ([AB])\]\n`{3,}\n(.*?)\n`{3,}", re.DOTALL)


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
    fake, run_args, capsys, tracking_uri, request
):
    def fair(shown):
        better = max(shown, key=lambda k: RANK[shown[k]])
        return f"Answer {better} is more complete.\n[[{better}]]"

    _serve(fake, fair)
    args = run_args + ["--model", "mid-model", "--model", "top-model", "--pairwise"]
    code, out, err = evaluate(args, capsys)
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
    # Both orders of every pair and row were asked: 2 calls per pair and row.
    pairwise_calls = [b for b in fake.calls_for("chat") if _answers_shown(b)]
    rows = len(fake.calls_for("top-model"))  # one answer per row
    assert rows > 0 and len(pairwise_calls) == 3 * 2 * rows


def test_a_judge_that_always_picks_the_first_shown_is_caught(
    fake, run_args, capsys, tracking_uri, request
):
    _serve(fake, lambda shown: "The first one.\n[[A]]")
    code, out, err = evaluate(run_args + ["--model", "top-model", "--pairwise"], capsys)
    assert code == 0, err
    metrics, _ = _parent_metrics(tracking_uri, request.node.name)
    prefix = "pairwise/fake-model_vs_top-model"
    assert metrics[f"{prefix}/consistency"] == 0.0
    assert metrics[f"{prefix}/first_position_rate"] == 1.0
    assert metrics[f"{prefix}/win_rate"] == 0.5  # every row a tie
    assert "agreed with itself across orders on 0%" in out


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


def test_against_the_baseline_run_and_the_gate(fake, run_args, capsys, tracking_uri, request):
    import mlflow

    def fair(shown):
        better = max(shown, key=lambda k: RANK[shown[k]])
        return f"[[{better}]]"

    _serve(fake, fair)
    assert evaluate(run_args, capsys)[0] == 0  # the baseline: "weak answer" on every row
    ANSWERS["fake-model"] = "best answer"  # the new version
    try:
        code, out, err = evaluate(
            run_args + ["--baseline", "last", "--pairwise", "--no-cache"], capsys
        )
        assert code == 0, err
        assert "fake-model vs baseline" in out and "wins 100%" in out, out[-1500:]
        client = mlflow.MlflowClient(tracking_uri)
        exp = client.get_experiment_by_name(request.node.name)
        newest = client.search_runs([exp.experiment_id], order_by=["attribute.start_time DESC"])[0]
        metrics = newest.data.metrics
        assert metrics["pairwise/baseline_vs_fake-model/win_rate"] == 1.0
        assert metrics["pairwise/baseline_vs_fake-model/consistency"] == 1.0
        # Worse than the last run, head to head: --fail-if-worse exits 4, everything logged.
        ANSWERS["fake-model"] = "weak answer"
        args = run_args + ["--baseline", "last", "--pairwise", "--fail-if-worse", "--no-cache"]
        code, out, err = evaluate(args, capsys)
        assert code == 4, err
        assert "loses head to head" in err
    finally:
        ANSWERS["fake-model"] = "weak answer"
