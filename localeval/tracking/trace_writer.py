"""Rows' traces written in the background while the run goes on: on a thread, or for big runs
in a second process (`TraceWriter`); what a trace holds is `traces.build`."""

from __future__ import annotations

import multiprocessing
import queue
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection

from mlflow import MlflowClient

from ..types import RowResult
from .mlflow_internals import TraceStore
from .traces import JudgePrompt, Prompts, TraceSettings, build, prompts_of

# Rows per write (MLflow links at most 100 traces to a run per call). A write waits for this many
# rows (or the last one): 25 a write cost 1.2 ms a row, 100 0.8 ms (a commit, an experiment
# lookup and a link call each), interpreter time the run's calls need meanwhile.
_BATCH = 100
# Rows from which a run's traces are written by a second process: its start (about 2 s of
# interpreter time, importing MLflow) costs what a thread writing 500 traces takes from the calls.
APART_FROM_ROWS = 500


class _Writes:
    """Batches of rows written as traces into one store; a failed write is remembered (the
    run's results stand without traces) and the later batches are skipped."""

    def __init__(self, tracking_uri: str, settings: TraceSettings) -> None:
        self.client = MlflowClient(tracking_uri)
        self.traces = TraceStore(tracking_uri)
        self.settings = settings
        self.trace_ids: dict[int, str] = {}  # row index -> its trace's id
        self.error: str | None = None

    def write(self, rows: Sequence[RowResult], prompts: Sequence[Prompts]) -> None:
        if self.error is not None:
            return
        try:
            built = [build(row, self.settings, p) for row, p in zip(rows, prompts)]
            self.traces.write(self.settings.experiment_id, built)
            ids = [info.trace_id for info, _ in built]
            self.client.link_traces_to_run(ids, self.settings.run_id)
            self.trace_ids |= {row.index: id_ for row, id_ in zip(rows, ids)}
        except Exception as exc:  # the evaluation stands without its traces
            self.error = f"{type(exc).__name__}: {exc}"


def _write_in_child(conn: Connection, tracking_uri: str, settings: TraceSettings) -> None:
    """The second process: batches from the pipe until None, then the trace ids and the error
    back. Ctrl-C is the run's to handle: it stops the calls and closes the writer, which hands
    in the rows it has (nothing lost)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    writes = _Writes(tracking_uri, settings)
    try:
        while (batch := conn.recv()) is not None:
            writes.write(*batch)
        conn.send((writes.trace_ids, writes.error))
    except (EOFError, OSError):  # the run's process is gone: what was handed in is written
        pass
    finally:
        conn.close()


class _Child:
    """`_Writes` in a second process, fed through a pipe."""

    def __init__(self, tracking_uri: str, settings: TraceSettings) -> None:
        # spawn, not fork: the run's process has threads (a forked child would inherit their
        # locks held). The child imports MLflow on the other core while the calls run.
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_write_in_child, args=(child, tracking_uri, settings), name="traces",
            daemon=True,
        )  # fmt: skip
        self._process.start()
        self.pid = self._process.pid
        child.close()
        self.trace_ids: dict[int, str] = {}
        self.error: str | None = None

    def _ended(self) -> str:
        self._process.join(timeout=5)
        return (
            f"the trace writer process we started (pid {self._process.pid}) ended with exit code "
            f"{self._process.exitcode} before it wrote every trace"
        )

    def write(self, rows: Sequence[RowResult], prompts: Sequence[Prompts]) -> None:
        if self.error is not None:
            return
        try:
            self._conn.send((list(rows), list(prompts)))
        except OSError:
            self.error = self._ended()
        except Exception as exc:  # a row that does not pickle: the run stands without traces
            self.error = f"rows not sent to the trace writer process: {type(exc).__name__}: {exc}"

    def finish(self) -> None:
        if self.error is None:
            try:
                self._conn.send(None)
                self.trace_ids, self.error = self._conn.recv()
            except (EOFError, OSError):
                self.error = self._ended()
        self._conn.close()
        self._process.join(timeout=30)


class TraceWriter:
    """Writes rows' traces in the background as they are handed in; `close` waits for all.

    On a thread by default; with `separate_process`, in a second process: writing a trace costs
    about 6.5 ms of interpreter time on MLflow 3.18 (its store reads the experiment again, builds
    ORM objects, flushes and commits, per trace; bench/README.md), which a thread takes from the
    calls it shares the interpreter lock with. A second process costs about 2 s to start
    (importing MLflow), paid on the other core. A write that fails (a store
    that refuses traces) is remembered, not raised mid-run: the run's results stand without
    traces, and `close` returns the reason for a note.
    """

    def __init__(
        self,
        tracking_uri: str,
        settings: TraceSettings,
        judge_prompt: JudgePrompt,
        enabled: bool = True,
        separate_process: bool = False,
    ) -> None:
        self.enabled = enabled
        self.trace_ids: dict[int, str] = {}  # row index -> its trace's id
        self._judge_prompt = judge_prompt
        self._queue: queue.Queue[RowResult | None] = queue.Queue()
        self._writes: _Writes | _Child | None = None
        if enabled:
            self._writes = (
                _Child(tracking_uri, settings)
                if separate_process
                else _Writes(tracking_uri, settings)
            )
            self._thread = threading.Thread(target=self._work, name="traces", daemon=True)
            self._thread.start()

    @property
    def child_pid(self) -> int | None:
        """The second process's id, when the traces are written by one."""
        return self._writes.pid if isinstance(self._writes, _Child) else None

    def put(self, row: RowResult) -> None:
        if self.enabled:
            self._queue.put(row)

    def _work(self) -> None:
        assert self._writes is not None
        batch: list[RowResult] = []
        while True:
            row = self._queue.get()
            if row is not None:
                batch.append(row)
            if batch and (row is None or len(batch) >= _BATCH):
                self._writes.write(batch, [prompts_of(r, self._judge_prompt) for r in batch])
                batch = []
            if row is None:
                return

    def close(self) -> str | None:
        """Wait for every trace handed in; the reason traces are missing, if any."""
        if self._writes is None:
            return None
        self._queue.put(None)
        self._thread.join()
        if isinstance(self._writes, _Child):
            self._writes.finish()
        self.trace_ids = self._writes.trace_ids
        return self._writes.error
