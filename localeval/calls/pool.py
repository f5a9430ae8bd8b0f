"""A bounded thread pool that keeps row order and shows progress."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from .progress import Progress, progress

T = TypeVar("T")
R = TypeVar("R")


def map_ordered(
    fn: Callable[[T], R],
    items: Sequence[T],
    concurrency: int,
    desc: str,
    quiet: bool = False,
    on_done: Callable[[int, R], None] | None = None,
) -> list[R]:
    """Apply `fn` to every item on at most `concurrency` threads; results in the items' order.

    `on_done(index, result)` is called for each result as it completes, in this thread.
    Progress goes to stderr unless `quiet`: a bar on a terminal, else a line every tenth of the
    rows or every 10 s (see `progress`).
    On an error or Ctrl-C the rows not started are dropped and it returns at once; the calls in
    flight finish in the background (their replies still reach the cache).
    """
    results: list[R | None] = [None] * len(items)
    stop = threading.Event()
    # Each finished row's index, posted by the worker. `concurrent.futures.wait` would instead
    # re-arm a waiter on every pending future at each wake-up: O(rows) per row, 20 s of a
    # 5,000-row run.
    finished: queue.SimpleQueue[int] = queue.SimpleQueue()

    def guarded(item: T) -> R:
        # Per-row failures are values (CallFailed is caught by `fn`); what raises here is fatal
        # (a refused API key): a worker must not start the next queued row meanwhile.
        if stop.is_set():
            raise _Stopped
        try:
            return fn(item)
        except BaseException:
            stop.set()
            raise

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix=desc)
    shown = progress(desc, len(items), quiet)
    try:
        futures: list[Future[R]] = []
        for index, item in enumerate(items):
            future = pool.submit(guarded, item)
            future.add_done_callback(lambda _, i=index: finished.put(i))
            futures.append(future)
        for _ in futures:
            # Woken by a finished row, or when the log is due a line (a slow first call).
            index = _next(finished, shown)
            shown.tick()
            future = futures[index]
            if isinstance(future.exception(), _Stopped):
                continue  # a row skipped after a fatal error; that error is raised below
            results[index] = result = future.result()
            if on_done is not None:
                on_done(index, result)
            shown.update()
    except BaseException:
        # Waiting for the calls in flight (up to --timeout each, times the retries) would make
        # Ctrl-C hang; a fatal error (a refused API key) stops the run just the same.
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        shown.close()
    pool.shutdown()
    return results  # type: ignore[return-value]


def _next(finished: queue.SimpleQueue[int], shown: Progress) -> int:
    """The next finished row's index; a tick each time the log is due a line meanwhile."""
    while True:
        try:
            return finished.get(timeout=shown.wait_s())
        except queue.Empty:
            shown.tick()


class _Stopped(Exception):
    """A row not started because another row failed fatally."""
