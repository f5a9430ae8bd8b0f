"""Secrets and exposure: a key used by the run is nowhere in what it leaves behind, and the
servers we start listen on 127.0.0.1 only."""

from __future__ import annotations

import os
import socket
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from conftest import VERDICT, evaluate
from fake_openai import FakeOpenAI

CANDIDATE_KEY = "sk-localeval-CANDIDATE-7f3a9c"  # recognisable, and in no fixture or file
JUDGE_KEY = "sk-localeval-JUDGE-d41e08"
JUDGE_KEY_VAR = "LOCALEVAL_TEST_JUDGE_KEY"


def _findings(secret: str, tracking_uri: str, roots: list[Path], texts: dict[str, str]) -> list:
    """Every place `secret` shows up: MLflow params, tags, metric names and artifacts of every
    run and logged model in the store, every file under `roots`, and the given texts."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    experiments = client.search_experiments()
    ids = [e.experiment_id for e in experiments]
    found: list[str] = []

    def check(where: str, value: Any) -> None:
        if secret in str(value):
            found.append(where)

    for exp in experiments:
        check(f"experiment {exp.name} tags", exp.tags)
    for run in client.search_runs(ids):
        where = f"run {run.info.run_name}"
        check(f"{where} params", run.data.params)
        check(f"{where} tags", run.data.tags)
        check(f"{where} metric names", list(run.data.metrics))
        artifacts = Path(client.download_artifacts(run.info.run_id, ""))
        roots.append(artifacts)
    models = client.search_logged_models(ids)
    assert models, "no logged model found: the candidate's model folder would go unscanned"
    for model in models:
        check(f"logged model {model.name} params", model.params)
        check(f"logged model {model.name} tags", model.tags)
        roots.append(Path(mlflow.artifacts.download_artifacts(model.artifact_location)))
    files = 0
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file():
                files += 1
                if secret.encode() in path.read_bytes():
                    found.append(str(path))
    for name, text in texts.items():
        check(name, text)
    assert files > 10, "the scan saw almost nothing: is the store where the test thinks?"
    return found


def _own_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store of this test's own, with artifacts under tmp_path (MLflow puts them under cwd)."""
    monkeypatch.chdir(tmp_path)
    return "sqlite:///" + str(tmp_path / "mlflow.db")


def _args(server: FakeOpenAI, models: str, tracking_uri: str, tmp_path: Path) -> list[str]:
    return [
        "--model", models,
        "--base-url", server.url,
        "--tracking-uri", tracking_uri,
        "--cache-dir", str(tmp_path / "cache"),
        "--max-retries", "0",
        "--quiet",
        "--report", str(tmp_path / "report.html"),
        "--output", str(tmp_path / "results.jsonl"),
    ]  # fmt: skip


def test_env_key_is_nowhere_in_runs_models_report_or_exports(tmp_path, monkeypatch, capsys):
    tracking_uri = _own_store(tmp_path, monkeypatch)
    monkeypatch.setenv("OPENAI_API_KEY", CANDIDATE_KEY)

    def reply(body: dict[str, Any]) -> str:
        return VERDICT if body["model"] == "chat" else "A fake answer."

    with FakeOpenAI(
        models=("fake-model", "fake-model-b"),
        reply=reply,
        gateway_endpoints={"chat": "llm/v1/chat"},
    ) as server:
        args = _args(server, "fake-model,fake-model-b", tracking_uri, tmp_path)
        code, out, err = evaluate(
            args + ["--stack", "external", "--gateway-url", server.root], capsys
        )
    assert code == 0, out + err
    # The key was really used, by the candidate and by the judge client...
    assert {h["authorization"] for h in server.headers} == {f"Bearer {CANDIDATE_KEY}"}
    assert (tmp_path / "report.html").exists() and (tmp_path / "results.aggregates.json").exists()
    # ...and is nowhere: MLflow (parent and child runs, logged models), report, exports, output.
    found = _findings(CANDIDATE_KEY, tracking_uri, [tmp_path], {"stdout": out, "stderr": err})
    assert found == []


@pytest.mark.slow
def test_keys_from_env_and_gateway_var_reference_are_nowhere(tmp_path, monkeypatch, capsys):
    """The gateway we start reads its key through `$VAR` in its config; neither that key nor the
    candidate's key from the environment reaches MLflow, the report or the exports."""
    tracking_uri = _own_store(tmp_path, monkeypatch)
    monkeypatch.setenv("OPENAI_API_KEY", CANDIDATE_KEY)
    monkeypatch.setenv(JUDGE_KEY_VAR, JUDGE_KEY)

    def reply(body: dict[str, Any]) -> str:
        return VERDICT if body["model"] == "judge-upstream" else "A fake answer."

    with FakeOpenAI(models=("fake-model",), reply=reply) as server:
        gateway_config = tmp_path / "gateway.yaml"
        gateway_config.write_text(
            "endpoints:\n"
            "  - name: chat\n"
            "    endpoint_type: llm/v1/chat\n"
            "    model:\n"
            "      provider: openai\n"
            "      name: judge-upstream\n"
            "      config:\n"
            f"        openai_api_key: ${JUDGE_KEY_VAR}\n"
            f"        openai_api_base: {server.url}\n",
            encoding="utf-8",
        )
        closed = _free_port()  # no gateway there: --stack auto starts ours on gateway.yaml
        args = _args(server, "fake-model", tracking_uri, tmp_path) + [
            "--stack", "auto",
            "--gateway-url", f"http://127.0.0.1:{closed}",
            "--gateway-config", str(gateway_config),
        ]  # fmt: skip
        code, out, err = evaluate(args, capsys)
    assert code == 0, out + err
    assert "started MLflow AI Gateway" in out
    # Each key was really used: the candidate's by our client, the judge's by the gateway.
    assert len(server.calls_for("fake-model")) == len(server.calls_for("judge-upstream")) == 2
    assert sorted(h["authorization"] for h in server.headers) == sorted(
        [f"Bearer {CANDIDATE_KEY}"] * 2 + [f"Bearer {JUDGE_KEY}"] * 2
    )
    assert JUDGE_KEY not in gateway_config.read_text()  # the config holds only the reference
    for secret in (CANDIDATE_KEY, JUDGE_KEY):
        found = _findings(secret, tracking_uri, [tmp_path], {"stdout": out, "stderr": err})
        assert found == [], secret


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(pgid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket listened on by a process in the group, from /proc."""
    inodes = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            fds = list((entry / "fd").iterdir())
        except OSError:  # the process is gone, or not ours to look at
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    out = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            host, port = local.split(":")
            raw = bytes.fromhex(host)  # 32-bit words in host (little-endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            out.add((socket.inet_ntop(family, raw), int(port, 16)))
    return out


@pytest.mark.slow
def test_servers_we_start_listen_on_loopback_only(tmp_path, monkeypatch):
    from localeval.calls.client import API_KEY_ENV, PLACEHOLDER_API_KEY
    from localeval.config.settings import EvalConfig
    from localeval.serving import servers, stack

    env = servers.telemetry_off(dict(os.environ))
    env.setdefault(API_KEY_ENV, PLACEHOLDER_API_KEY)
    with ExitStack() as services:
        started = [
            stack.start_llm_server(tmp_path, env, services),
            stack.start_gateway(EvalConfig().gateway_config, tmp_path, env, services),
        ]
        for service in started:
            servers.wait_ready(service)
            port = int(service.url.split(":")[2].split("/")[0])
            addresses = _listening(service.process.pid)  # its own group: pgid == pid
            assert (servers.LOOPBACK, port) in addresses, (service.name, addresses)
            assert {host for host, _ in addresses} == {"127.0.0.1"}, (service.name, addresses)
