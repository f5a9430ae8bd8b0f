"""A store made by an older MLflow stays readable after the pin moves: the runs of
tests/data/mlflow-3.17.2-store.tar.gz (made with MLflow 3.17.2 and this tool, a person's
feedback on each row's trace) serve as --baseline, head to head too, and --agreement reads them.

MLflow writes absolute artifact paths into its store, so the store is unpacked where it was made
(/tmp/localeval-store-3.17.2) and removed after.
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import VERDICT, evaluate
from fake_openai import FakeOpenAI

ARCHIVE = Path(__file__).parent / "data" / "mlflow-3.17.2-store.tar.gz"
WHERE = Path("/tmp/localeval-store-3.17.2")
EXPERIMENT = "made-by-3.17.2"


@pytest.fixture
def old_store() -> Iterator[str]:
    shutil.rmtree(WHERE, ignore_errors=True)
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(WHERE.parent, filter="data")
    try:
        yield f"sqlite:///{WHERE / 'mlflow.db'}"
    finally:
        shutil.rmtree(WHERE, ignore_errors=True)


def test_runs_logged_with_mlflow_3_17_2_serve_as_baseline_and_for_agreement(
    old_store, capsys, tmp_path
):
    import mlflow

    client = mlflow.MlflowClient(old_store)
    (old,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert old.info.run_name == "made by MLflow 3.17.2"

    def reply(body: dict) -> str:
        return VERDICT if body["model"] == "chat" else "An answer."

    endpoints = {"chat": "llm/v1/chat"}
    with FakeOpenAI(models=("gemma-3-270m",), reply=reply, gateway_endpoints=endpoints) as fake:
        args = ["--stack", "external", "--model", "gemma-3-270m", "--base-url", fake.url,
                "--gateway-url", fake.root, "--tracking-uri", old_store, "--experiment",
                EXPERIMENT, "--cache-dir", str(tmp_path / "cache"), "--quiet", "--rows", "none",
                "--baseline", old.info.run_id, "--pairwise"]  # fmt: skip
        code, out, err = evaluate(args, capsys)
    assert code == 0, err
    assert "vs baseline made by MLflow 3.17.2" in out
    assert "gemma-3-270m vs baseline made by MLflow 3.17.2" in out  # its answers, head to head
    code, out, err = evaluate(["--tracking-uri", old_store, "--agreement", old.info.run_id], capsys)
    assert code == 0, err
    metrics = client.get_run(old.info.run_id).data.metrics
    assert metrics["answer_similarity/v1/human_labelled_rows"] == 2
