"""The HTML report and the exports: escaping, self-containment, what they hold after a real run."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import evaluate
from fake_openai import FakeOpenAI, Fault
from typed_rows import graded_row

from localeval.types import (
    JudgeInfo,
    ModelResult,
    ModelSpec,
    RowResult,
)

PAYLOAD = '<script>document.title="pwned"</script><img src=x onerror="alert(1)">&amp;'
SCORE, WHY = "answer_similarity/v1/score", "answer_similarity/v1/justification"


ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "p", "b",
    "code", "ul", "li", "section", "div", "span", "table", "thead", "tbody", "tr", "th", "td",
    "button", "input", "label", "select", "option", "figure", "figcaption", "svg", "line",
    "text", "rect", "path", "script",
    "wbr",  # the row table's headers may wrap after a judge key's / and _
}  # fmt: skip


def _tags(page: str) -> list[tuple[str, list[str]]]:
    """Every start tag in the page with its attribute names, as a browser's tokenizer sees it."""
    from html.parser import HTMLParser

    found: list[tuple[str, list[str]]] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, [name for name, _ in attrs]))

    Collector().feed(page)
    return found


def _texts(page: str) -> list[str]:
    """Every text node of the page, character references decoded, as a browser shows it."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Collector(HTMLParser):
        def handle_data(self, data):
            found.append(data)

    Collector(convert_charrefs=True).feed(page)
    return found


def _row(**fields) -> RowResult:
    """One typed row graded by answer_similarity/v1; an `error` makes it a failed row."""
    return graded_row(0, **fields)


def _result(rows: list, model: str = "m", metrics: dict | None = None):
    return ModelResult(
        ModelSpec(model, "http://127.0.0.1:1/v1"),
        "run-1",
        metrics or {},
        [replace(row, index=i) for i, row in enumerate(rows)],
        (JudgeInfo("answer_similarity", "v1", ("chat",)),),
    )


def _render(*results, **kwargs) -> str:
    from localeval.output.html import render_html

    return render_html(list(results), **kwargs)


@pytest.mark.parametrize(
    ("where", "make"),
    [
        pytest.param("input", lambda: _render(_result([_row(inputs=PAYLOAD)])), id="input"),
        pytest.param("answer", lambda: _render(_result([_row(answer=PAYLOAD)])), id="answer"),
        pytest.param("target", lambda: _render(_result([_row(target=PAYLOAD)])),
                     id="ground_truth"),
        pytest.param("context", lambda: _render(_result([_row(context=PAYLOAD)])), id="context"),
        pytest.param("justification", lambda: _render(_result([_row(justification=PAYLOAD)])),
                     id="justification"),
        pytest.param("unscored reason", lambda: _render(_result(
            [_row(score=None, reason=PAYLOAD, justification="the judge's text")])),
                     id="unscored_reason"),
        pytest.param("error", lambda: _render(_result([_row(error=PAYLOAD)])),
                     id="candidate_error"),
        pytest.param("model id", lambda: _render(_result([_row()], model=PAYLOAD),
                                                 _result([_row()], model="other")),
                     id="model_id_in_comparison"),
        pytest.param("metric name", lambda: _render(_result([_row()], metrics={PAYLOAD: 1.0})),
                     id="metric_name"),
        pytest.param("dataset", lambda: _render(_result([_row()]), dataset=PAYLOAD),
                     id="dataset_name"),
        pytest.param("note", lambda: _render(_result([_row()]), notes=[PAYLOAD]), id="note"),
    ],
)  # fmt: skip
def test_every_model_and_dataset_string_is_escaped(where, make):
    page = make()
    assert PAYLOAD not in page, where
    # Shown, as text: a whole text node holds it once the tokenizer decodes the references (the
    # escaping is Jinja2's, `&#34;` where html.escape writes `&quot;`: the same text).
    assert any(PAYLOAD in text for text in _texts(page)), where
    # The page's own script is the only one, and no element or attribute came from the data.
    tags = _tags(page)
    assert [t for t, _ in tags].count("script") == 1
    assert {t for t, _ in tags} <= ALLOWED_TAGS
    assert not [a for _, attrs in tags for a in attrs if a.startswith("on")]


def test_page_is_self_contained_and_allows_only_its_own_script():
    page = _render(_result([_row(), _row(score=2)], metrics={"answer_similarity/v1/mean": 3}))
    for needle in ("src=", "href=", "url(", "@import", "<link", "<iframe", "fetch(", "XMLHttp"):
        assert needle not in page, needle
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    (csp,) = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert "default-src 'none'" in csp and f"script-src 'sha256-{digest}'" in csp
    assert page.count("<svg") == 1  # the histogram; the comparison chart needs two models


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        pytest.param({"a/v1/mean": 3.0, "a/v1/ci_low": 2.5, "a/v1/ci_high": 3.5},
                     [("a/v1/mean", 3.0, (2.5, 3.5))], id="interval_joins_mean"),
        pytest.param({"x": 1.0, "x/ci_low": 0.5, "x/ci_high": 1.5},
                     [("x", 1.0, (0.5, 1.5))], id="interval_joins_bare_metric"),
        pytest.param({"y/ci_low": 1.0, "y/ci_high": 2.0},
                     [("y (interval)", None, (1.0, 2.0))], id="interval_alone"),
        pytest.param({"z/mean": 1.0, "z/ci_low": 0.5},
                     [("z/ci_low", 0.5, None), ("z/mean", 1.0, None)], id="half_an_interval"),
        pytest.param({"n/mean": float("nan"), "b": 2}, [("b", 2.0, None), ("n/mean", None, None)],
                     id="nan_is_missing"),
    ],
)  # fmt: skip
def test_summary_rows_pair_intervals_with_their_metric(metrics, expected):
    from localeval.output.present import summary_rows

    assert summary_rows(metrics) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([2, 3, 3, None], [("1", 0), ("2", 1), ("3", 2), ("4", 0), ("5", 0),
                                       ("unscored", 1)], id="judge_scale_1_to_5"),
        pytest.param([0, 3], [(str(k), int(k in (0, 3))) for k in range(4)], id="zero_to_three"),
        pytest.param([3.5, 4.0, 4.0, 4.5], [("3.5", 1), ("4", 2), ("4.5", 1)],
                     id="means_of_repeats"),
        pytest.param([None, float("nan")], [("unscored", 2)], id="nothing_scored"),
        pytest.param([], [], id="no_rows"),
    ],
)  # fmt: skip
def test_histogram_bins(values, expected):
    from localeval.output.present import histogram_bins

    assert [(label, count) for label, count, _ in histogram_bins(values)] == expected


def test_histogram_of_continuous_scores_uses_ten_bins():
    from localeval.output.present import histogram_bins

    values = [i / 7 for i in range(40)]
    bars = histogram_bins(values)
    assert len(bars) == 10 and sum(count for _, count, _ in bars) == 40


def _runs(tracking_uri: str, experiment: str):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)

    # A top-level run's default name ends in the start of its id (told apart from the last).
    def name(run) -> str:
        return re.sub(r" [0-9a-f]{8}$", "", run.info.run_name)

    return client, {name(r): r for r in client.search_runs([exp.experiment_id])}


def test_run_logs_report_and_writes_report_and_exports(
    fake, run_args, tracking_uri, capsys, request, tmp_path
):
    report, output = tmp_path / "out" / "report.html", tmp_path / "out" / "results.jsonl"
    code, out, _ = evaluate(run_args + ["--report", str(report), "--output", str(output)], capsys)
    assert code == 0, out
    assert f"HTML report: {report}" in out and f"Per-row results: {output}" in out
    client, runs = _runs(tracking_uri, request.node.name)
    run = runs["fake-model"]
    logged = Path(client.download_artifacts(run.info.run_id, "report.html")).read_text()
    for page in (logged, report.read_text()):
        assert run.info.run_id in page and "What is Spark?" in page and "A fake answer." in page
        assert "covers the main points of the target." in page  # the judge's justification
        assert page.count('class="histogram"') == 1
        assert page.count('<tr class="ok"') == 2
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["row"] for r in rows] == [1, 2] and {r["model"] for r in rows} == {"fake-model"}
    assert {r["inputs"] for r in rows} == {"What is MLflow?", "What is Spark?"}
    assert all(r[SCORE] == 4 and r["answer"] == "A fake answer." for r in rows)
    assert all(r["run_id"] == run.info.run_id for r in rows)
    aggregates = json.loads((tmp_path / "out" / "results.aggregates.json").read_text())
    metrics = aggregates["models"]["fake-model"]["metrics"]
    assert metrics["answer_similarity/v1/mean"] == 4.0
    for key, value in metrics.items():  # the same numbers as the MLflow run
        assert value is None or math.isclose(value, run.data.metrics[key]), key
    assert aggregates["dataset"]["rows"] == 2 and aggregates["gate_failures"] == []


def test_csv_export_and_failed_row(fake, run_args, capsys, tmp_path):
    fake.script = [Fault(status=500)]  # the first candidate call fails; retries are off
    output = tmp_path / "results.csv"
    code, _, _ = evaluate(run_args + ["--output", str(output), "--concurrency", "1"], capsys)
    assert code == 3  # failed rows still get exported first
    with output.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {SCORE, WHY, "latency_s", "completion_tokens"} <= set(rows[0])
    failed = [r for r in rows if r["candidate_error"]]
    assert len(failed) == 1 and failed[0][SCORE] == "" and "500" in failed[0]["candidate_error"]
    aggregates = json.loads((tmp_path / "results.aggregates.json").read_text())
    assert aggregates["failed_rows"] == 1


def test_unscored_rows_show_their_reason(fake, run_args, capsys, tmp_path):
    fake.reply = lambda body: "I think it is fine." if body["model"] == "chat" else "Answer."
    report = tmp_path / "report.html"
    code, _, _ = evaluate(run_args + ["--report", str(report)], capsys)
    assert code == 0
    page = report.read_text()
    assert page.count('data-status="unscored"') == 2 and "I think it is fine." in page
    assert "[unscored:" not in page  # the reason is split out of the justification
    assert "no interval" in page  # nothing scored: no mean, no interval, never a default


def test_gate_failure_still_writes_the_exports(fake, run_args, capsys, tmp_path):
    output = tmp_path / "results.jsonl"
    args = ["--output", str(output), "--fail-under", "answer_similarity/v1/mean=5"]
    code, _, _ = evaluate(run_args + args, capsys)
    assert code == 4
    aggregates = json.loads((tmp_path / "results.aggregates.json").read_text())
    assert (
        aggregates["gate_failures"]
        and "answer_similarity/v1/mean" in aggregates["gate_failures"][0]
    )


def test_bad_output_extension_exits_2_before_any_call(fake, run_args, capsys, tmp_path):
    code, _, err = evaluate(run_args + ["--output", str(tmp_path / "results.txt")], capsys)
    assert code == 2 and "--output" in err and ".jsonl" in err and "Traceback" not in err
    assert fake.chat_calls == 0


def two_model_args(server: FakeOpenAI, tracking_uri: str, experiment: str, tmp_path: Path):
    return [
        "--stack", "external",
        "--model", "fake-model,fake-model-b",
        "--base-url", server.url,
        "--gateway-url", server.root,
        "--tracking-uri", tracking_uri,
        "--experiment", experiment,
        "--cache-dir", str(tmp_path / "cache"),
        "--max-retries", "0",
        "--quiet",
    ]  # fmt: skip


def test_several_models_get_a_comparison_report_on_the_parent_run(
    tracking_uri, capsys, request, tmp_path
):
    def reply(body):
        if body["model"] == "chat":
            better = "Model B" in body["messages"][0]["content"]
            return f"score: {5 if better else 3}\njustification: ok"
        return "Model B answer." if body["model"] == "fake-model-b" else "Answer."

    output = tmp_path / "results.jsonl"
    with FakeOpenAI(
        models=("fake-model", "fake-model-b"),
        reply=reply,
        gateway_endpoints={"chat": "llm/v1/chat"},
    ) as server:
        args = two_model_args(server, tracking_uri, request.node.name, tmp_path)
        code, out, _ = evaluate(args + ["--output", str(output)], capsys)
    assert code == 0, out
    client, runs = _runs(tracking_uri, request.node.name)
    parent = runs["compare 2 models"]
    page = Path(client.download_artifacts(parent.info.run_id, "report.html")).read_text()
    assert page.count('class="comparison"') == 1 and page.count('class="histogram"') == 2
    assert "fake-model-b vs fake-model" in page and page.count('data-model="fake-model-b"') == 2
    for name in ("fake-model", "fake-model-b"):  # each child run has its own one-model report
        child = Path(client.download_artifacts(runs[name].info.run_id, "report.html")).read_text()
        assert 'class="comparison"' not in child and runs[name].info.run_id in child
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(r["model"], r[SCORE]) for r in rows] == [
        ("fake-model", 3),
        ("fake-model", 3),
        ("fake-model-b", 5),
        ("fake-model-b", 5),
    ]
    aggregates = json.loads((tmp_path / "results.aggregates.json").read_text())
    assert aggregates["parent_run_id"] == parent.info.run_id
    assert list(aggregates["models"]) == ["fake-model", "fake-model-b"]
    (comparison,) = aggregates["comparisons"]
    assert comparison["a"] == "fake-model" and comparison["b"] == "fake-model-b"
    assert comparison["mean_diff"] == 2.0
