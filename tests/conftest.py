"""Shared fixtures: the scripted fake server on loopback, a tracking store, and a runner."""

from __future__ import annotations

import os
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


# The longest tests and modules: name prefixes and their seconds, measured on 2 busy cores. Only a
# scheduling hint (see pytest_collection_modifyitems): a test not listed runs as any `slow` one.
LONGEST: tuple[tuple[tuple[str, ...], float], ...] = (
    (("test_stack.py::test_embedded_stack_runs_all_five_judges_as_json_with_repeats",), 55),
    (("test_stack.py::test_embedded_stack_end_to_end_then_rerun_from_the_cache",), 29),
    (("test_postgres.py::",), 27),  # PostgreSQL and an `mlflow server` on it, once a module
    # One block: the worker's `mlflow server` (`mlflow_ui`) serves both modules.
    (("test_browser.py::", "test_server_gateway.py::"), 24),
    (("test_conversations.py::test_two_bundled_conversations_end_to_end_on_the_embedded",), 20),
    (("test_gateway.py::test_a_route_over_two_single_slot_servers_halves_the_judge_phase",), 20),
    (("test_cache.py::test_killed_run_resumes_asking_only_for_rows_not_stored",), 17),
    (("test_server_death.py::test_the_embedded_server_crashing_mid_run",), 17),
    (("test_hostile.py::test_four_runs_started_together_on_a_new_sqlite_store_all_succeed",), 15),
    (("test_hostile.py::test_no_folder_or_server_is_left_after_sigkill",), 15),
)
SLOW_S = 3.0  # any other `slow` test, about


def _longest(item: pytest.Item) -> int | None:
    name = item.nodeid.rpartition("tests/")[2]
    return next((i for i, (names, _) in enumerate(LONGEST) if name.startswith(names)), None)


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each xdist worker's share starts with its long tests and ends with short ones.

    `--dist worksteal` (addopts) gives worker k the k-th contiguous share of this order; a worker
    that runs out takes tests from the back of another's share. In collection order, with
    `load`, test_stack.py's embedded-stack minute came last and one worker ran it alone. Here
    the LONGEST blocks and the other `slow` tests are dealt longest first to the share with the
    least work so far, the remaining tests fill each share in collection order, and what is
    left to steal at the end is short. Only the order changes.
    """
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    sizes, left = [], len(items)
    for k in range(workers):  # worksteal's first split: len(pending) // nodes remaining
        sizes.append(left // (workers - k))
        left -= sizes[-1]
    listed: dict[int, list[pytest.Item]] = {}
    long: list[tuple[float, list[pytest.Item]]] = []
    short: list[pytest.Item] = []
    for item in items:
        if (index := _longest(item)) is not None:
            if index not in listed:
                listed[index] = []
                long.append((LONGEST[index][1], listed[index]))
            listed[index].append(item)
        elif item.get_closest_marker("slow") is not None:
            long.append((SLOW_S, [item]))
        else:
            short.append(item)
    long.sort(key=lambda block: -block[0])
    shares: list[list[pytest.Item]] = [[] for _ in sizes]
    work = [0.0] * len(sizes)
    for seconds, block in long:
        fits = [k for k in range(len(sizes)) if len(shares[k]) + len(block) <= sizes[k]]
        k = min(fits or range(len(sizes)), key=work.__getitem__)
        shares[k] += block
        work[k] += seconds
    for k, share in enumerate(shares):
        take = max(0, sizes[k] - len(share))
        share += short[:take]
        short = short[take:]
    shares[-1] += short  # only if a share overflowed
    items[:] = [item for share in shares for item in share]


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
