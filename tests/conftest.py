"""Shared fixtures: the scripted fake server on loopback, a tracking store, and a runner."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_openai import FakeOpenAI  # noqa: E402

VERDICT = "score: 4\njustification: The answer covers the main points of the target."


def scripted(candidate: str = "A fake answer.", verdict: str = VERDICT) -> Any:
    """A reply function: judge endpoints get `verdict`, the candidate gets `candidate`."""

    def reply(body: dict[str, Any]) -> str:
        return verdict if body.get("model") in ("chat", "chat2") else candidate

    return reply


# The longest tests and modules (seconds, measured on 2 busy cores), run first in this order.
# Only a scheduling hint: a test missing here runs with the other `slow` tests.
LONGEST = (
    "test_stack.py::test_embedded_stack_runs_all_five_judges_as_json_with_repeats",  # 36-60
    "test_conversations.py::test_two_bundled_conversations_end_to_end_on_the_embedded_stack",  # 26
    "test_stack.py::test_embedded_stack_end_to_end_then_rerun_from_the_cache",  # 30
    "test_postgres.py::",  # 50: PostgreSQL and an `mlflow server` on it
    # Next to each other: one worker's `mlflow server` on its store serves both (`mlflow_ui`).
    "test_browser.py::",  # 40
    "test_server_gateway.py::",  # 35
    "test_gateway.py::test_a_route_over_two_single_slot_servers_halves_the_judge_phase",  # 20
    "test_server_death.py::test_the_embedded_server_crashing_mid_run",  # 17
    "test_hostile.py::test_four_runs_started_together_on_a_new_sqlite_store_all_succeed",  # 15
    "test_hostile.py::test_no_folder_or_server_is_left_after_sigkill",  # 13
    "test_cache.py::test_killed_run_resumes_asking_only_for_rows_not_stored",  # 9 each
)


def _rank(item: pytest.Item) -> int:
    name = item.nodeid.rpartition("tests/")[2]
    for rank, prefix in enumerate(LONGEST):
        if name.startswith(prefix):
            return rank
    return len(LONGEST) + (item.get_closest_marker("slow") is None)


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first, then the other `slow` ones, then the rest (each group in
    collection order). A pytest-xdist worker works through its share front to back and takes
    tests from the back of another's when it runs out (`--dist worksteal` in addopts), so the
    run no longer ends with one worker alone on a long test: in collection order, with `load`,
    test_stack.py's embedded-stack minute came last."""
    items.sort(key=_rank)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    """A fake that serves `fake-model` and also plays the gateway with a `chat` endpoint."""
    with FakeOpenAI(
        models=("fake-model",),
        reply=scripted(),
        gateway_endpoints={"chat": "llm/v1/chat", "chat2": "llm/v1/chat"},
    ) as server:
        yield server


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow puts artifacts in ./mlruns of the working folder: keep them out of the checkout.
    monkeypatch.chdir(tmp_path)
    # And the temp folders it never removes (`download_artifacts` without a destination copies
    # into a new one) out of /tmp, for this process and the ones a test starts.
    temp = tmp_path / ".tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    # mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI in os.environ: a test that calls it
    # would hand its store to every process the later tests of this worker start.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    # One SQLite store per session: creating one runs MLflow's migrations (seconds).
    return "sqlite:///" + str(tmp_path_factory.mktemp("mlflow") / "mlflow.db")


@pytest.fixture(scope="session")
def mlflow_ui(tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on `tracking_uri` with its AI Gateway allowed to reach loopback
    (GATEWAY_ENV), stopped with its whole group: one per worker for the MLflow UI in Chromium
    and test_server_gateway.py (a start costs 10 to 40 s here). Yields its URL."""
    from mlflow_servers import GATEWAY_ENV, mlflow_server

    folder = tmp_path_factory.mktemp("mlflow-server")
    artifacts = ("--artifacts-destination", str(folder / "artifacts"))  # not ./mlartifacts
    with mlflow_server(tracking_uri, folder / "server.log", *artifacts, env=GATEWAY_ENV) as url:
        yield url


@pytest.fixture
def run_args(fake: FakeOpenAI, tracking_uri: str, tmp_path: Path, request: Any) -> list[str]:
    """Flags for an evaluation against the fake server, in a fresh experiment and cache."""
    return [
        "--stack",
        "external",
        "--model",
        "fake-model",
        "--base-url",
        fake.url,
        "--gateway-url",
        fake.root,
        "--tracking-uri",
        tracking_uri,
        "--experiment",
        request.node.name,
        "--cache-dir",
        str(tmp_path / "cache"),
        "--max-retries",
        "0",
        "--quiet",
    ]


def evaluate(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the entry script in-process; returns (exit code, stdout, stderr)."""
    from mlflow_evaluate import main

    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err
