"""The tracking store, before MLflow touches it: can it be used, and one creator at a time.

`preflight` runs before any server starts or LLM call and answers in seconds: MLflow's own
client retries an unreachable server for minutes and fails with tracebacks. `creating` holds a
lock while a SQLite store is created and migrated: two processes migrating one new file break
each other ("duplicate column name", "Online migration expected to match one row").
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import PreflightError
from ..redact import mask
from ..serving.servers import http_status

TIMEOUT_S = 3.0
# The port each database's URI implies when it names none.
_DB_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}


def default_tracking_uri() -> str:
    return "sqlite:///" + str(Path.cwd() / "mlflow.db")


def sqlite_path(uri: str) -> Path | None:
    """The file of a `sqlite:///` store (None for other stores and in-memory SQLite)."""
    if not uri.startswith("sqlite:///") or uri == "sqlite:///:memory:":
        return None
    return Path(uri.removeprefix("sqlite:///"))


def preflight(uri: str) -> None:
    """Raise PreflightError (exit 2) naming the store and what to do, if it cannot be used."""
    scheme = urlsplit(uri).scheme.split("+")[0].lower()
    if (path := sqlite_path(uri)) is not None:
        _writable(uri, path.parent, "the SQLite file's folder")
    elif scheme in ("http", "https"):
        _server(uri)
    elif scheme in _DB_PORTS:
        _database(uri, scheme)
    elif scheme in ("", "file"):  # a folder of run files (./mlruns)
        folder = Path(urlsplit(uri).path if scheme else uri)
        _writable(uri, folder if folder.exists() else folder.parent, "the store's folder")


def _writable(uri: str, folder: Path, what: str) -> None:
    advice = (
        "Pass --tracking-uri sqlite:///<a writable folder>/mlflow.db, or run from a folder you "
        "can write to (the default store is ./mlflow.db)."
    )
    if not folder.is_dir():
        raise PreflightError(
            f"The tracking store {mask(uri)} cannot be created: {what} {folder} does not exist "
            f"or is not a folder. Create it, or use another store. {advice}"
        )
    try:  # a real write: permission bits say nothing to root, nor about read-only mounts
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise PreflightError(
            f"The tracking store {mask(uri)} cannot be written: {what} {folder} takes no new "
            f"file ({exc.strerror}). {advice}"
        ) from None


def _server(uri: str) -> None:
    status = http_status(uri.rstrip("/") + "/health", TIMEOUT_S)
    if status is None:
        raise PreflightError(
            f"No MLflow tracking server answers at {mask(uri)} (GET /health, {TIMEOUT_S:g} s). "
            "Start it (e.g. `pipenv run mlflow server --host 127.0.0.1 --port 5000`), check the "
            "address, or drop --tracking-uri to use the local SQLite store ./mlflow.db."
        )
    if status in (401, 403):
        raise PreflightError(
            f"The MLflow tracking server at {mask(uri)} refused us (HTTP {status}). Set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) "
            "to an account it accepts."
        )
    if status != 200:
        raise PreflightError(
            f"The server at {mask(uri)} answers GET /health with HTTP {status}: it does not look "
            "like an MLflow tracking server. Check the address and port of --tracking-uri."
        )


def _database(uri: str, scheme: str) -> None:
    parts = urlsplit(uri)
    if not parts.hostname:  # a Unix socket: the driver will say what is wrong
        return
    port = parts.port or _DB_PORTS[scheme]
    try:
        socket.create_connection((parts.hostname, port), timeout=TIMEOUT_S).close()
    except OSError as exc:
        raise PreflightError(
            f"No database answers for the tracking store {mask(uri)} ({parts.hostname}:{port}: "
            f"{exc.strerror or exc}). Start the database server, check host and port, or drop "
            "--tracking-uri to use the local SQLite store ./mlflow.db."
        ) from None


@contextmanager
def creating(uri: str) -> Iterator[None]:
    """Held while the store is first opened: for a SQLite file, an exclusive lock on
    `<file>.lock` (left in place: removing a lock file races with its next user)."""
    path = sqlite_path(uri)
    if path is None or not path.parent.is_dir():
        yield
        return
    with open(f"{path}.lock", "a+b") as lock:
        _lock(lock.fileno())
        try:
            yield
        finally:
            _unlock(lock.fileno())


if os.name == "nt":  # pragma: no cover - the tests run on Linux
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
