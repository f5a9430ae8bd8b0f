"""`mlflow server` as the tests start it: on loopback, in a process group of its own (its
workers would keep the port otherwise), stopped with the whole group."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# What the server's AI Gateway needs for an upstream on loopback over plain http (mlflow/gateway/
# ssrf.py), and a passphrase to encrypt the secrets it stores.
GATEWAY_ENV = {
    "MLFLOW_GATEWAY_API_BASE_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_GATEWAY_API_BASE_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_CRYPTO_KEK_PASSPHRASE": "a passphrase for the tests only",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group we started (SIGKILL if it lingers), then reap it."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
    except ProcessLookupError:
        pass


@contextmanager
def mlflow_server(
    backend_store_uri: str,
    log: Path,
    *options: str,
    ready_s: float = 90,
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """The server on `backend_store_uri` (more `options` for `mlflow server`, more `env` for
    its environment), its output in `log`; yields its URL once `/health` answers (a new
    database is migrated first)."""
    from localeval.serving.servers import telemetry_off

    # MLflow's server-side jobs (scheduled scorers, prompt optimization) are used by no test;
    # with them on, each server started 8 huey consumer processes (an MLflow import each) that
    # then polled at ~4% of a core apiece for as long as the server ran.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})}
    port = free_port()
    argv = [str(Path(sys.executable).with_name("mlflow")), "server",
            "--backend-store-uri", backend_store_uri, *options,
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=telemetry_off({**os.environ, **env}),
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        stop_group(process)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def create_endpoint(server: str, name: str, api_base: str, model: str) -> None:
    """A secret (the upstream's URL in its auth_config), a model definition and an endpoint, as
    the server's UI creates them (`/api/3.0/mlflow/gateway/...`), on a server started with
    GATEWAY_ENV."""
    api = f"{server}/api/3.0/mlflow/gateway"
    secret = _post(f"{api}/secrets/create", {
        "secret_name": f"{name}-key", "secret_value": {"api_key": "local"},
        "provider": "openai", "auth_config": {"api_base": api_base},
    })["secret"]  # fmt: skip
    definition = _post(f"{api}/model-definitions/create", {
        "name": f"{name}-model", "secret_id": secret["secret_id"], "provider": "openai",
        "model_name": model,
    })["model_definition"]  # fmt: skip
    _post(f"{api}/endpoints/create", {
        "name": name, "usage_tracking": False,
        "model_configs": [{"model_definition_id": definition["model_definition_id"],
                           "linkage_type": "PRIMARY", "weight": 1.0}],
    })  # fmt: skip
