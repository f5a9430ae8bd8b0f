"""A hostile environment: runs started together on a store that does not exist yet, a run
killed with SIGKILL, a tracking store that cannot be used, credentials inside URLs, a umask that
shares everything. (Verdicts planted in answers: test_injection.py.)"""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, VERDICT, evaluate
from fake_openai import FakeOpenAI

SECRET = "Pa55-localeval-7c1e"  # recognisable, and in no fixture or file
GATEWAY = {"chat": "llm/v1/chat"}  # the fake also plays the gateway


def _reply(body: dict[str, Any]) -> str:
    return VERDICT if body["model"] in ("chat", "judge-upstream") else "A fake answer."


def _data(path: Path, rows: int) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["inputs", "ground_truth"])
        writer.writerows([f"Question {i}?", f"Answer {i}."] for i in range(rows))
    return path


def _args(server: FakeOpenAI, tracking_uri: str, data: Path, cache: Path) -> list[str]:
    return [
        "--stack", "external",
        "--model", "fake-model",
        "--base-url", server.url,
        "--gateway-url", server.root,
        "--tracking-uri", tracking_uri,
        "--data", str(data),
        "--cache-dir", str(cache),
        "--max-retries", "0",
        "--quiet",
    ]  # fmt: skip


def _spawn(args: list[str], cwd: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "mlflow_evaluate.py"), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # killpg reaches it and nothing else
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- 1. runs started together on a new SQLite store -----------------------------------------


@pytest.mark.slow
def test_four_runs_started_together_on_a_new_sqlite_store_all_succeed(tmp_path):
    store = tmp_path / "store" / "mlflow.db"
    store.parent.mkdir()
    uri = "sqlite:///" + str(store)
    data = _data(tmp_path / "q.csv", 3)
    with FakeOpenAI(models=("fake-model",), reply=_reply, gateway_endpoints=GATEWAY) as fake:
        runs = [
            _spawn(_args(fake, uri, data, tmp_path / f"cache{i}") + ["--experiment", "together"],
                   tmp_path)
            for i in range(4)
        ]  # fmt: skip
        outputs = [p.communicate(timeout=300)[0] for p in runs]
    for process, output in zip(runs, outputs):
        assert process.returncode == 0, output
        assert "Traceback" not in output
    with sqlite3.connect(store) as db:
        statuses = [s for (s,) in db.execute("select status from runs")]
        experiments = [n for (n,) in db.execute("select name from experiments")]
    assert statuses == ["FINISHED"] * 4
    assert experiments.count("together") == 1


# ---- 2 and 7. a run killed with SIGKILL ------------------------------------------------------


def _running_run(store: Path) -> str | None:
    if not store.exists():
        return None
    try:
        with sqlite3.connect(store, timeout=5) as db:
            found = db.execute("select run_uuid from runs where status = 'RUNNING'").fetchone()
    except sqlite3.OperationalError:  # tables not created yet
        return None
    return None if found is None else found[0]


def _kill_while_running(
    args: list[str], store: Path, cwd: Path, tmpdir: Path
) -> tuple[str, subprocess.Popen[str]]:
    """Start a run, SIGKILL it once its MLflow run is RUNNING; its run id and process."""
    process = _spawn(args, cwd, TMPDIR=str(tmpdir))
    try:
        deadline = time.monotonic() + 180
        while (run_id := _running_run(store)) is None:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        time.sleep(0.5)  # into the rows
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return run_id, process


@pytest.mark.slow
def test_run_left_running_by_a_killed_process_is_marked_killed(tmp_path, capsys):
    import mlflow

    store = tmp_path / "mlflow.db"
    uri = "sqlite:///" + str(store)
    data = _data(tmp_path / "q.csv", 8)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    client = mlflow.MlflowClient(uri)
    with FakeOpenAI(
        models=("fake-model",), reply=_reply, latency_s=0.3, gateway_endpoints=GATEWAY
    ) as fake:
        args = _args(fake, uri, data, tmp_path / "cache") + ["--concurrency", "1"]
        killed, _ = _kill_while_running(args, store, tmp_path, tmpdir)
        fake.latency_s = 0.0
        code, out, err = evaluate([a for a in args if a != "--quiet"], capsys)
        assert code == 0, out + err
        old = client.get_run(killed)
        assert old.info.status == "KILLED"
        assert f"run {killed}" in out and "marked KILLED" in out
        runs = client.search_runs([old.info.experiment_id])
        (new,) = [r for r in runs if r.info.run_id != killed]
        assert new.info.status == "FINISHED"
        tags = new.data.tags
        assert tags["localeval.host"] == socket.gethostname()
        assert tags["localeval.pid"] == str(os.getpid())
        assert tags["localeval.started"][:4].isdigit()
        # A run RUNNING in a live process is left alone (pid 1 lives as long as we do).
        live = client.create_run(old.info.experiment_id, tags={**tags, "localeval.pid": "1"})
        code, out, err = evaluate(args, capsys)
        assert code == 0, out + err
    assert client.get_run(live.info.run_id).info.status == "RUNNING"


@pytest.mark.slow
def test_no_folder_or_server_is_left_after_sigkill_once_the_next_run_starts(tmp_path, capsys):
    """Killed while the gateway we started serves the judge: the next run stops that gateway
    and removes the killed run's temp folder; a clean run leaves nothing in TMPDIR."""
    store = tmp_path / "mlflow.db"
    uri = "sqlite:///" + str(store)
    data = _data(tmp_path / "q.csv", 8)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    try:
        with FakeOpenAI(models=("fake-model",), reply=_reply, latency_s=0.3) as fake:
            gateway_config = tmp_path / "gateway.yaml"
            gateway_config.write_text(
                "endpoints:\n  - name: chat\n    endpoint_type: llm/v1/chat\n    model:\n"
                "      provider: openai\n      name: judge-upstream\n      config:\n"
                f"        openai_api_key: $OPENAI_API_KEY\n        openai_api_base: {fake.url}\n",
                encoding="utf-8",
            )
            args = _args(fake, uri, data, tmp_path / "cache") + [
                "--stack", "auto",
                "--gateway-url", f"http://127.0.0.1:{_free_port()}",  # nothing there: we start one
                "--gateway-config", str(gateway_config),
                "--concurrency", "1",
            ]  # fmt: skip
            args.remove("--quiet")
            _, process = _kill_while_running(args, store, tmp_path, tmpdir)
            started = re.search(r"started MLflow AI Gateway at http://127.0.0.1:(\d+)",
                                process.stdout.read())  # fmt: skip
            assert started, "the killed run should have started a gateway"
            port = int(started.group(1))
            assert _answers(port), "the gateway the killed run started outlives it"
            left = sorted(p.name for p in tmpdir.iterdir())
            assert left == [f"localeval-run-{process.pid}"]  # all of the run in one folder

            fake.latency_s = 0.0
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("TMPDIR", str(tmpdir))
                patch.setattr(tempfile, "tempdir", None)  # as in a new process: from TMPDIR
                code, out, err = evaluate(args, capsys)
        assert code == 0, out + err
        assert list(tmpdir.iterdir()) == []
        assert not _answers(port)  # the killed run's gateway was stopped
    finally:
        _stop_processes_mentioning(str(tmp_path))  # whatever this test started, if still up


def _stop_processes_mentioning(text: str) -> None:
    """SIGKILL each process whose command line names `text` (servers of the runs we started)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


# ---- 3. a tracking store that cannot be used -------------------------------------------------


def _silent_server() -> socket.socket:
    """Accepts connections and never answers (a hung server, or a firewall that drops)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


@pytest.mark.parametrize("kind", ["closed port", "hung server", "database", "read-only folder"])
def test_unusable_tracking_store_is_exit_2_in_seconds_before_any_call(fake, tmp_path, capsys, kind):
    hung = _silent_server()
    try:
        uri = {
            "closed port": f"http://me:{SECRET}@127.0.0.1:{_free_port()}",
            "hung server": f"http://127.0.0.1:{hung.getsockname()[1]}",
            "database": f"postgresql+psycopg2://me:{SECRET}@127.0.0.1:{_free_port()}/mlflow",
            # root may write anywhere a mode says it may not: /proc takes no new file, even so.
            "read-only folder": "sqlite:///"
            + str(Path("/proc/self/mlflow.db") if os.geteuid() == 0 else tmp_path / "ro/x.db"),
        }[kind]
        if kind == "read-only folder" and os.geteuid() != 0:
            (tmp_path / "ro").mkdir(mode=0o555)
        data = _data(tmp_path / "q.csv", 2)
        started = time.monotonic()
        code, out, err = evaluate(_args(fake, uri, data, tmp_path / "cache"), capsys)
        took = time.monotonic() - started
    finally:
        hung.close()
    assert code == 2, out + err
    assert took < 15
    assert "Traceback" not in out + err
    assert fake.requests == []  # before any LLM call
    assert SECRET not in out + err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    message = err.removeprefix("error: ")
    if kind in ("closed port", "database"):
        assert "me:***@127.0.0.1" in message
    assert {
        "closed port": "No MLflow tracking server answers",
        "hung server": "No MLflow tracking server answers",
        "database": "No database answers",
        "read-only folder": "cannot be written",
    }[kind] in message
    assert "--tracking-uri" in message


# ---- 5. what others can read -----------------------------------------------------------------


def test_files_holding_prompts_answers_or_verdicts_are_owner_only(fake, tmp_path, capsys):
    saved = os.umask(0o022)  # a common umask: files 0644, folders 0755
    try:
        out_dir = tmp_path / "out"
        args = _args(fake, "sqlite:///" + str(tmp_path / "mlflow.db"),
                     _data(tmp_path / "q.csv", 2), tmp_path / "cache")  # fmt: skip
        code, out, err = evaluate(
            args + ["--report", str(out_dir / "report.html"),
                    "--output", str(out_dir / "results.jsonl")],
            capsys,
        )  # fmt: skip
        assert os.umask(0o022) == 0o022  # the user's umask is back after the run
    finally:
        os.umask(saved)
    assert code == 0, out + err
    made = [*tmp_path.glob("mlflow.db*"), tmp_path / "cache", tmp_path / "mlruns", out_dir]
    paths = [p for root in made for p in [root, *root.rglob("*")]]
    assert len([p for p in paths if p.is_file()]) > 8  # db, cache, artifacts, report, exports
    assert any(p.name == "replies.sqlite" for p in paths)
    assert any(p.suffix == ".html" for p in paths)
    shared = [
        f"{p.relative_to(tmp_path)} {stat.filemode(p.stat().st_mode)}"
        for p in paths
        if p.stat().st_mode & 0o077
    ]
    assert shared == []


# ---- 4. credentials inside URLs --------------------------------------------------------------


def test_credentials_in_urls_work_for_calls_and_are_masked_everywhere(tmp_path, capsys):
    from test_secrets import _findings

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.chdir(tmp_path)
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    try:
        with FakeOpenAI(models=("fake-model",), reply=_reply, gateway_endpoints=GATEWAY) as fake:
            base = fake.url.replace("http://", f"http://me:{SECRET}@")
            gateway = fake.root.replace("http://", f"http://me:{SECRET}@")
            args = _args(fake, uri, _data(tmp_path / "q.csv", 2), tmp_path / "cache")
            args[args.index(fake.url)] = base
            args[args.index(fake.root)] = gateway
            args.remove("--quiet")
            code, out, err = evaluate(
                args + ["--report", str(tmp_path / "report.html"),
                        "--output", str(tmp_path / "results.jsonl")],
                capsys,
            )  # fmt: skip
    finally:
        monkeypatch.undo()
    assert code == 0, out + err
    # The calls went through, with the credentials as HTTP Basic auth...
    assert len(fake.calls_for("fake-model")) == len(fake.calls_for("chat")) == 2
    # ...and they are nowhere: params, tags, traces' spans, artifacts, report, exports, output.
    # (The store's own files are scanned byte by byte: that covers every span attribute.)
    found = _findings(SECRET, uri, [tmp_path], {"stdout": out, "stderr": err})
    assert found == [], found
    assert "me:***@127.0.0.1" in (tmp_path / "report.html").read_text()


def test_preflight_errors_mask_credentials_in_the_urls_they_name(fake, tmp_path, capsys):
    closed = f"http://me:{SECRET}@127.0.0.1:{_free_port()}"
    args = _args(fake, "sqlite:///" + str(tmp_path / "mlflow.db"),
                 _data(tmp_path / "q.csv", 2), tmp_path / "cache")  # fmt: skip
    for flag, value, needle in (
        ("--base-url", closed + "/v1", "No OpenAI-compatible server answers at http://me:***@"),
        ("--gateway-url", closed, "No MLflow AI Gateway answers at http://me:***@"),
    ):
        changed = list(args)
        changed[changed.index(flag) + 1] = value
        code, out, err = evaluate(changed, capsys)
        assert code == 2, out + err
        assert needle in err and SECRET not in out + err


@pytest.mark.slow
def test_server_logs_are_kept_and_named_when_a_server_fails_to_start(tmp_path, capsys):
    """A gateway config MLflow refuses: the gateway we start exits; its log stays for the user
    (path printed), and no other folder of the run is left behind."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    broken = tmp_path / "gateway.yaml"
    broken.write_text(
        "endpoints:\n  - name: chat\n    endpoint_type: llm/v1/chat\n    model:\n"
        "      provider: no-such-provider\n      name: judge\n",
        encoding="utf-8",
    )
    with FakeOpenAI(models=("fake-model",), reply=_reply) as fake:
        args = _args(fake, "sqlite:///" + str(tmp_path / "mlflow.db"),
                     _data(tmp_path / "q.csv", 2), tmp_path / "cache")  # fmt: skip
        args[args.index("--stack") + 1] = "auto"
        args[args.index("--gateway-url") + 1] = f"http://127.0.0.1:{_free_port()}"
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("TMPDIR", str(tmpdir))
            patch.setattr(tempfile, "tempdir", None)
            code, out, err = evaluate(args + ["--gateway-config", str(broken)], capsys)
    assert code == 2, out + err
    assert "Traceback (most recent call last)" not in err.split("Its last log lines")[0]
    kept = re.search(r"The logs of the servers we started are kept in (\S+)", err)
    assert kept, err
    (left,) = tmpdir.iterdir()
    assert left == Path(kept.group(1)) and left.name.startswith("localeval-logs-")
    assert "no-such-provider" in (left / "MLflow AI Gateway.log").read_text()


@pytest.mark.slow
def test_server_logs_go_with_the_run_when_the_fault_is_the_users(tmp_path, capsys):
    """A misspelt --fail-under metric after the gateway we started is up: exit 2 naming the
    flag, and the servers' logs go with the run's temp folder (they say nothing about it)."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    with FakeOpenAI(models=("fake-model",), reply=_reply) as fake:
        config = tmp_path / "gateway.yaml"
        config.write_text(
            "endpoints:\n  - name: chat\n    endpoint_type: llm/v1/chat\n    model:\n"
            "      provider: openai\n      name: fake-model\n      config:\n"
            f"        openai_api_key: $OPENAI_API_KEY\n        openai_api_base: {fake.url}\n",
            encoding="utf-8",
        )
        args = _args(fake, "sqlite:///" + str(tmp_path / "mlflow.db"),
                     _data(tmp_path / "q.csv", 2), tmp_path / "cache")  # fmt: skip
        args[args.index("--stack") + 1] = "auto"
        args[args.index("--gateway-url") + 1] = f"http://127.0.0.1:{_free_port()}"
        args += ["--gateway-config", str(config), "--fail-under", "answer_similarity/v1/maen=3"]
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("TMPDIR", str(tmpdir))
            patch.setattr(tempfile, "tempdir", None)
            code, out, err = evaluate(args, capsys)
    assert code == 2, out + err
    assert "Did you mean answer_similarity/v1/mean" in err
    assert "kept in" not in err
    assert list(tmpdir.iterdir()) == []
