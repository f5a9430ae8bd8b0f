"""Processes we start and the HTTP probes that tell whether a server answers.

Every process we start gets its own process group (killing `mlflow gateway start` alone leaves its
gunicorn master holding the port), binds 127.0.0.1, and is stopped by whoever started it.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import workspace
from .errors import StackError

LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 60.0


def telemetry_off(env: dict[str, str]) -> dict[str, str]:
    """MLflow 3 sends usage telemetry by default; off unless the user set these themselves."""
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "true")
    return env


def _request(url: str, body: Any = None) -> urllib.request.Request:
    # urllib takes `user:password@` for part of the host name: send it as Basic auth, as the
    # openai SDK (httpx) does for the calls themselves.
    parts = urllib.parse.urlsplit(url)
    headers = {} if body is None else {"Content-Type": "application/json"}
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        secret = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{secret}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
        netloc = parts.netloc.rpartition("@")[2]
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    data = None if body is None else json.dumps(body).encode()
    return urllib.request.Request(url, data=data, headers=headers)


def get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(_request(url), timeout=timeout) as resp:
        return json.loads(resp.read())


def post_json(url: str, body: Any, timeout: float) -> tuple[int | None, str]:
    """POST `body` as JSON: the HTTP status and the reply's text (up to 2,000 characters), or
    None and the reason when nothing answers in `timeout` seconds."""
    try:
        with urllib.request.urlopen(_request(url, body), timeout=timeout) as resp:
            return resp.status, resp.read(2000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(2000).decode(errors="replace")
    except (OSError, ValueError) as exc:
        return None, str(getattr(exc, "reason", None) or exc)


def http_status(url: str, timeout: float = 3.0) -> int | None:
    """The HTTP status of GET `url`, or None when nothing answers in `timeout` seconds."""
    try:
        with urllib.request.urlopen(_request(url), timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def list_models(base_url: str, timeout: float = 2.0) -> list[str] | None:
    """Model ids a candidate server lists at GET /models, or None if it does not answer."""
    try:
        data = get_json(base_url.rstrip("/") + "/models", timeout)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        return None
    return [str(m.get("id")) for m in data["data"] if isinstance(m, dict)]


def list_gateway_endpoints(gateway_url: str, timeout: float = 2.0) -> dict[str, str] | None:
    """Gateway endpoint names and their types, or None if no gateway answers there."""
    try:
        data = get_json(gateway_url.rstrip("/") + "/api/2.0/endpoints/", timeout)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return {e["name"]: e.get("endpoint_type", "") for e in data.get("endpoints", []) if "name" in e}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@dataclass
class Service:
    """A server process we started, in its own process group, logging to a file."""

    name: str
    url: str
    process: subprocess.Popen
    log_path: Path
    probe: Callable[[], Any] | None = None  # returns None until the service answers

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 5.0) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=grace_s)
        except ProcessLookupError:
            pass


def spawn(name: str, url: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Service:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group, so stop() reaches every child
        )
    if (run := workspace.current()) is not None:
        run.started(process.pid, argv)
    return Service(name=name, url=url, process=process, log_path=log_path)


def wait_ready(service: Service, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Wait until the service answers its probe; a StackError with its log if it dies or hangs."""
    probe = service.probe or (lambda: None)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise StackError(
                f"The {service.name} we started exited with status {service.process.returncode} "
                f"before it was ready. Its last log lines:\n{service.log_tail()}"
            )
        if probe() is not None:
            return
        time.sleep(0.2)
    raise StackError(
        f"The {service.name} we started at {service.url} was not ready after {timeout_s:.0f} s. "
        f"Its last log lines:\n{service.log_tail()}"
    )
