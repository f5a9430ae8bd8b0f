"""Processes we start and the HTTP probes that tell whether a server answers.

Every process we start gets its own process group (killing `mlflow gateway start` alone leaves its
gunicorn master holding the port), binds 127.0.0.1, and is stopped by whoever started it.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
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

from .. import workspace
from ..errors import ServerDied, StackError
from ..workspace import how_it_ended

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
    stopping: bool = False  # we asked it to stop: its exit is no death

    @property
    def pid(self) -> int:
        return self.process.pid

    def died(self) -> bool:
        """Whether it exited without being asked to (a crash, a signal, the OOM killer)."""
        return not self.stopping and self.process.poll() is not None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 5.0) -> None:
        if self.process.poll() is not None:
            return  # dead already: `died()` keeps saying so for the run's last message
        self.stopping = True
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
    service = Service(name=name, url=url, process=process, log_path=log_path)
    if (run := workspace.current()) is not None:
        run.started(process.pid, argv)
        run.services.append(service)
    return service


AMX_KERNEL = b"ggml_backend_amx_mul_mat"  # exported by ggml's AMX path, which crashes


def cpu_has_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        with cpuinfo.open(encoding="ascii", errors="replace") as info:
            return any(line.startswith("flags") and " amx_int8" in line for line in info)
    except OSError:
        return False


def _llama_cpp_folders() -> list[Path]:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(folder) for folder in spec.submodule_search_locations]


def ggml_amx_libraries(folders: list[Path] | None = None) -> list[Path]:
    """The ggml libraries of the installed llama-cpp-python (of `folders`, the package's
    folders) that carry ggml's AMX kernels."""
    found = []
    for folder in _llama_cpp_folders() if folders is None else folders:
        for lib in sorted((folder / "lib").glob("libggml*.so*")):
            with contextlib.suppress(OSError):
                if AMX_KERNEL in lib.read_bytes():
                    found.append(lib)
    return found


def amx_build_problem(
    cpuinfo: Path = Path("/proc/cpuinfo"), folders: list[Path] | None = None
) -> str | None:
    """Why the embedded server will crash here, when it will: on a CPU with AMX, a native build
    of ggml carries AMX kernels that die at their first matrix product (GPF at ldtilecfg in
    ggml_backend_amx_mul_mat). The project's .env builds without them."""
    if not cpu_has_amx(cpuinfo) or not (libs := ggml_amx_libraries(folders)):
        return None
    return (
        f"This CPU has AMX, and the installed llama-cpp-python was built with ggml's AMX kernels "
        f"({libs[0].name}), which crash on the first completion. Rebuild it with the project's "
        "flags (pipenv reads CMAKE_ARGS from .env): PIP_NO_CACHE_DIR=1 pipenv run pip install "
        "--force-reinstall --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36"
    )


def _advice(service: Service) -> str:
    """What to try, for a server of ours that died (never: start a server the user has not)."""
    code = service.process.returncode or 0
    if service.name.startswith("llama.cpp") and code < 0 and -code != signal.SIGKILL:
        if (amx := amx_build_problem()) is not None:
            return amx
        return (
            "If it happens again at the same point, rebuild llama-cpp-python for this machine "
            "(PIP_NO_CACHE_DIR=1 pipenv run pip install --force-reinstall --no-deps "
            "--no-binary llama-cpp-python llama-cpp-python==0.3.36; pipenv reads the build "
            "flags from .env), or evaluate with your own server (--stack external, --base-url)"
        )
    if code == -signal.SIGKILL:
        return (
            "If the kernel killed it for memory ('dmesg' says 'Out of memory'), free memory or "
            "lower --concurrency, then re-run"
        )
    if code > 0:
        return "Its last log lines say why (a config it refused, a port in use...)"
    return "Re-run the same command; if it happens again, its log says why"


def died_error(services: list[Service], when: str) -> ServerDied:
    """The run's error for servers of ours that died: which (pid, URL), how they ended, their
    last log lines and where the log is kept, and what to try."""
    run = workspace.current()
    parts = []
    for s in services:
        log = run.kept_path(s.log_path) if run is not None else s.log_path
        tail = "\n".join(f"  | {line}" for line in s.log_tail(8).splitlines())
        parts.append(
            f"The {s.name} this run started (pid {s.pid}, at {s.url}) {how_it_ended(s)} {when}. "
            f"{_advice(s)}. Its log is {log}; its last lines:\n{tail}"
        )
    return ServerDied("\n".join(parts))


def wait_ready(service: Service, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Wait until the service answers its probe; a StackError with its log if it dies or hangs."""
    probe = service.probe or (lambda: None)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.died():
            error = died_error([service], "before it was ready")
            if (service.process.returncode or 0) > 0:  # it refused to start, e.g. a bad config
                raise StackError(str(error))
            raise error  # a crash or a signal: exit 3, a server of ours died
        if probe() is not None:
            return
        time.sleep(0.2)
    raise StackError(
        f"The {service.name} we started at {service.url} was not ready after {timeout_s:.0f} s. "
        f"Its last log lines:\n{service.log_tail()}"
    )
