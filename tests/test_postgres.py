"""PostgreSQL as the tracking store: through `mlflow server` by three evaluations at once, the
judge through that server's AI Gateway, and as `--tracking-uri postgresql://...` directly.

Needs Debian's `postgresql` package (initdb, pg_ctl); skipped with the reason when missing. As
root (here and in CI) PostgreSQL's programs run as the `postgres` user the package creates:
initdb refuses to run as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, evaluate, scripted
from fake_openai import FakeOpenAI
from mlflow_servers import GATEWAY_ENV, create_endpoint, free_port, stop_group
from mlflow_servers import mlflow_server as mlflow_server_on

pytestmark = pytest.mark.slow

ROWS = 10
VERDICT = "score: 4\njustification: ok"
METRIC = "answer_similarity/v1/mean"
JUDGE_MODEL = "judge-model"  # what the server's gateway endpoint asks its upstream for


def _pg_bin() -> Path | None:
    """The newest Debian PostgreSQL's bin folder (/usr/lib/postgresql/N/bin), if any."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    return max(found, key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0), default=None)


@dataclass(frozen=True)
class Postgres:
    """A running PostgreSQL on loopback: password authentication, one superuser."""

    port: int
    password: str
    user: str = "postgres"

    def uri(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its SQLAlchemy URI (default driver: psycopg 3)."""
        import psycopg

        with psycopg.connect(self.uri("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.uri(name)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """PostgreSQL in a temp folder on a free loopback port (no Unix socket), stopped after."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("needs Debian's PostgreSQL: apt-get install postgresql (initdb, pg_ctl)")
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        with contextlib.suppress(KeyError):
            owner = pwd.getpwnam("postgres")
        if owner is None or runuser is None:
            pytest.skip(
                "initdb refuses to run as root, and there is no postgres user (made by Debian's "
                "postgresql package) or no runuser to run it as"
            )
        as_user = [runuser, "-u", "postgres", "--"]
    # Not pytest's tmp_path: it is under /tmp/pytest-of-root (mode 0700), which the postgres user
    # cannot enter. mkdtemp's folder is 0700 too, and is given to that user.
    base = Path(tempfile.mkdtemp(prefix="localeval-pg-"))
    data, log = base / "data", base / "postgres.log"
    cluster = Postgres(port=free_port(), password=secrets.token_hex(16))
    (base / "pwfile").write_text(cluster.password + "\n")
    if owner is not None:
        for path in (base, base / "pwfile"):
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def run(*argv: str | Path) -> None:
        # cwd: the test's own folder (0700, root's) is not the postgres user's to enter.
        done = subprocess.run(
            [*as_user, *map(str, argv)], cwd=base, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            pytest.fail(f"{argv[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    try:
        run(bin_dir / "initdb", "-D", data, "-U", cluster.user, "--pwfile", base / "pwfile",
            "--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C")  # fmt: skip
        # Appended by root, the file stays the postgres user's. Durability is not under test.
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {cluster.port}\n"
                "unix_socket_directories = ''\nfsync = off\nsynchronous_commit = off\n"
                "full_page_writes = off\n"
            )
        run(bin_dir / "pg_ctl", "start", "-D", data, "-l", log, "-w", "-t", "60")
        yield cluster
    finally:
        if (data / "postmaster.pid").exists():  # started, even if pg_ctl gave up waiting
            _stop_postgres(as_user, bin_dir, data)
        shutil.rmtree(base, ignore_errors=True)


def _stop_postgres(as_user: list[str], bin_dir: Path, data: Path) -> None:
    """pg_ctl stop -m fast, then -m immediate, then SIGKILL to the postmaster we started.

    Not a process-group kill: PostgreSQL 15's postmaster and each of its children call setsid(),
    so every one is in a group of its own. Children exit when the postmaster is gone.
    """
    for mode in ("fast", "immediate"):
        argv = [*as_user, str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", mode, "-w"]
        try:
            if subprocess.run(argv, cwd="/", capture_output=True, timeout=60).returncode == 0:
                return
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(OSError, ValueError, IndexError):
        os.kill(int((data / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)


@pytest.fixture(scope="module")
def mlflow_server(
    postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """`mlflow server` on a new PostgreSQL database with proxied artifacts and its AI Gateway
    (GATEWAY_ENV), on loopback; one for the module (a start costs ~20 s, migrations included).

    Yields the server's URL and its artifacts folder.
    """
    backend = postgres.create_database("server")
    folder = tmp_path_factory.mktemp("pg-mlflow-server")
    artifacts = folder / "artifacts"
    log = folder / "mlflow-server.log"
    # A new database: the server runs MLflow's migrations before it answers.
    with mlflow_server_on(backend, log, "--artifacts-destination", str(artifacts),
                          "--serve-artifacts", ready_s=120, env=GATEWAY_ENV) as url:  # fmt: skip
        yield url, artifacts


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    """The candidate `fake-model`, and the gateway's `chat` endpoint as the judge."""
    with FakeOpenAI(
        models=("fake-model",),
        reply=scripted(candidate="A fake answer.", verdict=VERDICT),
        gateway_endpoints={"chat": "llm/v1/chat"},
    ) as server:
        yield server


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "questions.csv"
    path.write_text(
        "inputs,ground_truth\n" + "".join(f"Question {i}?,Target {i}.\n" for i in range(ROWS)),
        encoding="utf-8",
    )
    return path


def _start_evaluation(
    folder: Path, fake: FakeOpenAI, tracking_uri: str, data: Path
) -> subprocess.Popen[bytes]:
    """`mlflow_evaluate.py` as a user runs it, in `folder` with its own cache and log."""
    from localeval.serving.servers import telemetry_off

    folder.mkdir()
    argv = [sys.executable, str(ROOT / "mlflow_evaluate.py"),
            "--stack", "external", "--model", "fake-model",
            "--base-url", fake.url, "--gateway-url", fake.root,
            "--tracking-uri", tracking_uri, "--experiment", "team",
            "--cache-dir", str(folder / "cache"), "--quiet", "--data", str(data)]  # fmt: skip
    with (folder / "output.log").open("wb") as out:
        return subprocess.Popen(
            argv,
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=telemetry_off(dict(os.environ)),
            start_new_session=True,
        )


def _wait_all(processes: list[subprocess.Popen[bytes]], timeout: float) -> list[int | None]:
    """Each one's exit code, or None for those still running at the deadline (then stopped)."""
    deadline = time.monotonic() + timeout
    codes: list[int | None] = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            stop_group(process)
            codes.append(None)
    return codes


def _logs(folders: list[Path]) -> str:
    return "\n".join(f"--- {f.name}:\n{(f / 'output.log').read_text()[-4000:]}" for f in folders)


def test_three_evaluations_at_once_into_an_mlflow_server_on_postgres(
    mlflow_server, fake, data, tmp_path
):
    import mlflow
    from mlflow import MlflowClient

    server_url, artifacts = mlflow_server
    folders = [tmp_path / f"evaluation-{i}" for i in range(3)]
    processes = [_start_evaluation(f, fake, server_url, data) for f in folders]
    codes = _wait_all(processes, timeout=300)
    assert codes == [0, 0, 0], _logs(folders)

    client = MlflowClient(server_url)
    experiment = client.get_experiment_by_name("team")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3, _logs(folders)
    mlflow.set_tracking_uri(server_url)
    for run in runs:
        run_id = run.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.metrics[METRIC] == 4.0
        # Proxied: the run's artifacts went through the server into its artifacts folder.
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        report = Path(client.download_artifacts(run_id, "report.html", str(tmp_path / run_id)))
        assert "fake-model" in report.read_text(encoding="utf-8")
        assert list(artifacts.rglob(f"{run_id}/artifacts/report.html"))
        traces = mlflow.search_traces(
            locations=[experiment.experiment_id], run_id=run_id, return_type="list"
        )
        assert len(traces) == ROWS
        assert {t.info.trace_metadata["mlflow.sourceRun"] for t in traces} == {run_id}
    # Every row of every run was answered and judged by the fake: nothing came from elsewhere.
    assert len(fake.calls_for("fake-model")) == len(fake.calls_for("chat")) == 3 * ROWS


def test_a_run_judged_through_the_servers_gateway_on_postgres(
    mlflow_server, data, tmp_path, capsys, request
):
    """Issue 23: the AI Gateway of an `mlflow server` on PostgreSQL (test_server_gateway.py has
    it on SQLite): an endpoint created through the server's REST API, a run judged through
    `gateway:/chat` logs the judge's metric, and each row's verdict as an assessment."""
    import mlflow
    from mlflow import MlflowClient

    server_url, _ = mlflow_server

    def reply(body: dict) -> str:
        return VERDICT if body["model"] == JUDGE_MODEL else "A fake answer."

    with FakeOpenAI(models=("fake-model",), reply=reply) as fake:
        create_endpoint(server_url, "chat", fake.url, JUDGE_MODEL)
        args = ["--stack", "external", "--model", "fake-model", "--base-url", fake.url,
                "--tracking-uri", server_url, "--experiment", request.node.name,
                "--judge-endpoint", "gateway:/chat", "--data", str(data),
                "--cache-dir", str(tmp_path / "cache"), "--max-retries", "0",
                "--quiet"]  # fmt: skip
        code, out, err = evaluate(args, capsys)
        assert code == 0, out + err
        # Every row's verdict came from the fake through the server's gateway, as `judge-model`.
        assert len(fake.calls_for(JUDGE_MODEL)) == ROWS, "the server's gateway did not judge"
    client = MlflowClient(server_url)
    experiment = client.get_experiment_by_name(request.node.name)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics[METRIC] == 4.0
    assert run.data.params["judge/answer_similarity"] == f"chat (openai:{JUDGE_MODEL})"
    mlflow.set_tracking_uri(server_url)
    traces = mlflow.search_traces(
        locations=[experiment.experiment_id], run_id=run.info.run_id, return_type="list"
    )
    assert len(traces) == ROWS
    for trace in traces:
        (verdict,) = [a for a in trace.info.assessments if a.name == "answer_similarity"]
        assert verdict.value == 4 and verdict.rationale == "ok", trace.info.trace_id


def test_tracking_uri_postgresql_directly(postgres, fake, data, tmp_path, capsys):
    from mlflow import MlflowClient

    uri = postgres.create_database("direct")  # new: the evaluation itself creates MLflow's tables
    # In-process (a subprocess re-imports MLflow for seconds; the three above are processes).
    args = ["--stack", "external", "--model", "fake-model", "--base-url", fake.url,
            "--gateway-url", fake.root, "--tracking-uri", uri, "--experiment", "team",
            "--cache-dir", str(tmp_path / "cache"), "--quiet", "--data", str(data)]  # fmt: skip
    code, out, err = evaluate(args, capsys)
    assert code == 0, out + err
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("team").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics[METRIC] == 4.0
