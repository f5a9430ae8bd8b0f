"""The stack as a user meets it: the entry script as a subprocess, and the embedded servers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, evaluate

ENTRY = str(ROOT / "mlflow_evaluate.py")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the socket goes


def _entry(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [sys.executable, ENTRY, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_lists_flags_and_exit_codes_without_importing_mlflow():
    code = (
        "import sys; sys.argv = ['mlflow_evaluate.py', '--help'];"
        "import mlflow_evaluate as m\n"
        "try:\n    m.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('MLFLOW_IMPORTED' if 'mlflow' in sys.modules else 'LAZY')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    for flag in (
        "--data",
        "--model",
        "--base-url",
        "--system-prompt",
        "--temperature",
        "--max-tokens",
        "--gateway-url",
        "--gateway-config",
        "--judge-endpoint",
        "--tracking-uri",
        "--experiment",
        "--stack",
    ):
        assert flag in out.stdout
    assert "exit codes:" in out.stdout and "could not run" in out.stdout
    assert "Precedence: command-line flag > --config file" in out.stdout
    assert out.stdout.strip().endswith("LAZY")  # --help stays fast: MLflow is imported lazily


def test_external_stack_with_nothing_running_exits_2_with_a_paragraph(tmp_path):
    port = _closed_port()
    result = _entry(["--stack", "external", "--base-url", f"http://127.0.0.1:{port}/v1"], tmp_path)
    assert result.returncode == 2
    assert f"http://127.0.0.1:{port}/v1" in result.stderr
    assert "LM Studio" in result.stderr and "--stack embedded" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing was logged


def test_the_embedded_model_has_a_second_id_with_its_own_system_prompt():
    """Two embedded models on one server, offline: `--model` with both ids plans one server and
    two candidates that differ in their settings, not in the model the server is asked for."""
    from localeval.candidate.settings import candidate_settings
    from localeval.config.settings import resolve
    from localeval.config.slices import CandidateOptions, ServingOptions
    from localeval.serving.stack import plan

    closed = f"http://127.0.0.1:{_closed_port()}"
    # --stack embedded: under auto, a --base-url that does not answer is reported, not replaced.
    config = resolve(["--model", "gemma-3-270m,gemma-3-270m-terse", "--stack", "embedded",
                      "--gateway-url", closed, "--temperature", "0.7"])  # fmt: skip
    resolved = plan(ServingOptions.of(config))
    a, b = resolved.models
    assert (a.id, b.id) == ("gemma-3-270m", "gemma-3-270m-terse")
    assert a.base_url == b.base_url == resolved.llm_url  # one embedded server for both
    options = CandidateOptions.of(config)
    first, second = candidate_settings(options, a), candidate_settings(options, b)
    assert first.model == second.model == "gemma-3-270m"  # the id the server lists
    assert first.system_prompt == config.system_prompt and first.temperature == 0.7
    assert second.system_prompt != config.system_prompt and second.temperature == 0.0
    assert first.endpoint().identity() != second.endpoint().identity()  # cached apart


def test_bad_data_file_exits_2_naming_file_row_and_column(tmp_path):
    data = tmp_path / "bad.csv"
    data.write_text("inputs,ground_truth\nWhat is MLflow?,\n", encoding="utf-8")
    # Without --require-reference the row is only not applicable to answer_similarity.
    args = ["--stack", "external", "--data", str(data), "--require-reference"]
    result = _entry(args, tmp_path)
    assert result.returncode == 2
    assert str(data) in result.stderr and "row 1" in result.stderr
    assert "'ground_truth'" in result.stderr and "Traceback" not in result.stderr


def _listening(url: str) -> bool:
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


def _answers(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip().startswith("answer:")]


@pytest.mark.slow
def test_embedded_stack_end_to_end_then_rerun_from_the_cache(tmp_path):
    """The default main job, from a cold start, on the embedded llama.cpp server and gateway;
    then the same command again, answered from the cache (regression: the embedded servers'
    random ports were part of the cache key)."""
    import sqlite3

    args = ["--stack", "embedded", "--max-tokens", "64", "--quiet"]
    result = _entry(args, tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    started = [line for line in result.stdout.splitlines() if line.startswith("started ")]
    assert len(started) == 2, result.stdout
    urls = [line.split(" at ")[1].split()[0] for line in started]
    assert not any(_listening(url) for url in urls)  # no process we started is left listening

    import mlflow

    client = mlflow.MlflowClient("sqlite:///" + str(tmp_path / "mlflow.db"))
    exp = client.get_experiment_by_name("local-llm-judge")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["model"] == "gemma-3-270m"
    # The tiny judge's verdicts may not parse; the ratio is always logged, never a silent grade.
    assert "answer_similarity/v1/unscored_ratio" in run.data.metrics
    assert 0 < run.data.metrics["completion_tokens/mean"] <= 64  # max_tokens reached the server
    path = client.download_artifacts(run.info.run_id, "eval_results_table.json")
    table = json.loads(Path(path).read_text())
    justification = table["columns"].index("answer_similarity/v1/justification")
    assert all(row[justification] for row in table["data"])  # the judge's text is kept per row

    db = tmp_path / ".mlflow_eval_cache" / "replies.sqlite"
    count = sqlite3.connect(db).execute("SELECT COUNT(*) FROM replies").fetchone()[0]
    assert count >= 4  # two answers and two verdicts
    second = _entry(args, tmp_path, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM replies").fetchone()[0] == count
    assert _answers(result.stdout) == _answers(second.stdout)
    # The second run started no server: it says where its answers came from, and claims no speed.
    assert not [line for line in second.stdout.splitlines() if line.startswith("started ")]
    rerun = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])[0]
    assert rerun.info.run_id != run.info.run_id
    assert rerun.data.params["base_url"].startswith("embedded llama.cpp server (not started")
    assert run.data.params["base_url"].startswith("http://127.0.0.1:")
    assert rerun.data.metrics["candidate/cached_answers"] == 2
    assert "candidate/tokens_per_s" not in rerun.data.metrics
    assert run.data.metrics["candidate/tokens_per_s"] > 0


@pytest.mark.slow
def test_embedded_stack_runs_all_five_judges_as_json_with_repeats(tmp_path, capsys):
    """Every built-in judge's prompt through the real gateway and llama.cpp server, as JSON
    verdicts asked twice each at temperature 0.7 (one run: each start of the stack costs
    seconds). In-process: the entry script as a subprocess is the cold-start test's point."""
    data = str(ROOT / "data" / "rag_qa.jsonl")
    judges = "answer_similarity,answer_correctness,answer_relevance,relevance,faithfulness"
    # One row of the three (--shard), 16-token verdicts: ten verdicts on the 270M model in
    # seconds.
    args = ["--stack", "embedded", "--data", data, "--shard", "1/3", "--judge", judges,
            "--judge-format", "json", "--judge-repeats", "2", "--judge-temperature", "0.7",
            "--judge-max-tokens", "16", "--max-tokens", "24", "--quiet"]  # fmt: skip
    code, out, err = evaluate(args, capsys)  # in tmp_path (conftest): ./mlflow.db is there
    assert code == 0, out[-3000:] + err[-3000:]
    import mlflow

    client = mlflow.MlflowClient("sqlite:///" + str(tmp_path / "mlflow.db"))
    (run,) = client.search_runs([client.get_experiment_by_name("local-llm-judge").experiment_id])
    for judge in judges.split(","):
        assert f"{judge}/v1/unscored_ratio" in run.data.metrics, judge
        # 16 tokens cut a JSON verdict inside its justification: its score, first, is still read.
        assert run.data.metrics[f"{judge}/v1/cut_off_ratio"] > 0, judge
        assert run.data.metrics[f"{judge}/v1/verdict_tokens_max"] <= 16, judge
        path = client.download_artifacts(
            run.info.run_id, f"judge_verdicts/{judge}.json", str(tmp_path)
        )
        verdicts = json.loads(Path(path).read_text())
        assert len(verdicts) == 1 and len(verdicts[0]["chat"]) == 2, judge


def test_telemetry_is_off_for_us_and_our_servers_unless_the_user_opts_in(monkeypatch):
    from localeval.serving import stack

    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    monkeypatch.delenv("DO_NOT_TRACK", raising=False)
    env = stack._child_env()
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true" and env["DO_NOT_TRACK"] == "true"
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")  # the user's explicit choice stands
    assert stack._child_env()["MLFLOW_DISABLE_TELEMETRY"] == "false"
