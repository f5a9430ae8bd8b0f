"""Where a run's own files go, and who may read them.

Everything we write holds prompts, answers or verdicts (reply cache, the SQLite store we create,
artifacts, reports, exports): while a run is open the umask is 077, so files are 0600 and
folders 0700 whatever the user's umask (and the servers we start inherit it).

Temporary files go to one folder per run, `$TMPDIR/localeval-run-<pid>` (MLflow's and the
servers' temp files too: `TMPDIR` is set for the children), removed at exit. A run killed with
SIGKILL cannot remove it: the next run removes every such folder whose process is gone, and
stops the servers that run started (listed there; each in its own process group, they outlive
it). The servers' logs live there too; when the run fails they are moved to
`localeval-logs-<time>` and kept for the user to read.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RUN_PREFIX = "localeval-run-"
LOGS_PREFIX = "localeval-logs-"
SERVERS_FILE = "servers.jsonl"
_RUN_FOLDER = re.compile(re.escape(RUN_PREFIX) + r"(\d+)$")


class Workspace:
    """The run's private temp folder; `logs()` makes the servers' log folder on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._logs: Path | None = None
        # The servers this run started (`servers.Service`), watched for an exit we did not ask
        # for: a crash of ours must be named as such, not taken for a server the user runs.
        self.services: list[Any] = []
        # Where `keep_logs` will move the logs, fixed now so that a message can name the path.
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.kept_logs = root.parent / f"{LOGS_PREFIX}{stamp}-{os.getpid()}"

    def logs(self) -> Path:
        if self._logs is None:
            self._logs = self.root / "logs"
            self._logs.mkdir(exist_ok=True)
        return self._logs

    def kept_path(self, path: Path) -> Path:
        """Where a file of the logs folder will be once the logs are kept (see `keep_logs`)."""
        if self._logs is not None and path.is_relative_to(self._logs):
            return self.kept_logs / path.relative_to(self._logs)
        return path

    def started(self, pid: int, argv: list[str]) -> None:
        """Note a server we started (a process group leader), for `remove_stale`."""
        with open(self.root / SERVERS_FILE, "a") as out:
            out.write(json.dumps({"pid": pid, "argv": argv}) + "\n")

    def keep_logs(self) -> Path | None:
        """Move the servers' logs out of the temp folder (which goes at exit); their new path,
        or None when no server was started."""
        if self._logs is None or not any(self._logs.iterdir()):
            return None
        kept = self.kept_logs
        shutil.move(str(self._logs), kept)
        self._logs = None
        return kept


_current: Workspace | None = None


def current() -> Workspace | None:
    return _current


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale(parent: Path) -> list[Path]:
    """Remove the temp folders of our runs whose process is gone, after stopping the servers
    they started; the removed paths."""
    removed = []
    for path in parent.glob(RUN_PREFIX + "*"):
        match = _RUN_FOLDER.match(path.name)
        if match and path.is_dir() and not alive(int(match.group(1))):
            _stop_orphans(path / SERVERS_FILE)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _stop_orphans(listing: Path) -> None:
    try:
        lines = listing.read_text().splitlines()
    except OSError:
        return
    for line in lines:
        try:
            entry = json.loads(line)
            pid, argv = int(entry["pid"]), list(entry["argv"])
            # Only if that pid still runs the very command we started (pids are reused).
            running = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if [a.decode(errors="replace") for a in running] == argv:
            _stop_group(pid)


def _stop_group(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM to the group, SIGKILL if its leader lingers: the next run may need its port."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for an init that may never reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@contextmanager
def private_run() -> Iterator[Workspace]:
    """Owner-only files and a private temp folder for the duration of a run (all restored)."""
    global _current
    saved_umask = os.umask(0o077)
    parent = Path(tempfile.gettempdir())
    remove_stale(parent)
    root = parent / f"{RUN_PREFIX}{os.getpid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    saved = tempfile.tempdir, os.environ.get("TMPDIR"), _current
    tempfile.tempdir = str(root)
    os.environ["TMPDIR"] = str(root)
    _current = Workspace(root)
    try:
        yield _current
    finally:
        tempfile.tempdir, tmpdir, _current = saved
        if tmpdir is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = tmpdir
        shutil.rmtree(root, ignore_errors=True)
        os.umask(saved_umask)


# The servers this run started (serving.servers.Service), and which of them died: asked by the
# chat client before every call, so it lives here, below the calls and the serving stage.
def dead() -> list[Any]:
    """The servers this run started that exited without being asked to (none outside a run).
    Cheap (a non-blocking wait per server): asked before every call that goes out."""
    run = current()
    return [] if run is None else [s for s in run.services if s.died()]


def wait_dead(seconds: float) -> list[Any]:
    """`dead()`, waiting up to `seconds` for a server to finish dying: a call can fail (reset
    connection, the gateway's 500) a moment before the crashed process is gone."""
    run = current()
    if run is None or not run.services:
        return []
    deadline = time.monotonic() + seconds
    while not (found := dead()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def how_it_ended(service: Any) -> str:
    """'killed by signal SIGSEGV (a crash)', 'exited with code 1', for a process that ended."""
    code = service.process.returncode
    if code is None:
        return "is still running"
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    why = {
        "SIGSEGV": "a crash",
        "SIGBUS": "a crash",
        "SIGILL": "an instruction this CPU does not have",
        "SIGABRT": "it aborted",
        "SIGFPE": "a crash",
        "SIGKILL": "often the kernel's out-of-memory killer: see 'dmesg'",
        "SIGTERM": "stopped by someone else",
        "SIGINT": "interrupted",
    }.get(name)
    return f"was killed by signal {name}" + (f" ({why})" if why else "")


def died_reason(services: list[Any]) -> str:
    """A row's failure reason when a server we started is dead: short, names it."""
    return "; ".join(
        f"the {s.name} this run started (pid {s.pid}) {how_it_ended(s)}" for s in services
    )
