"""A bounded thread pool that keeps row order and shows progress."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TypeVar

from tqdm import tqdm

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
    A progress bar (rows/s and ETA) goes to stderr when it is a terminal and `quiet` is off.
    On an error or Ctrl-C the rows not started are dropped and it returns at once; the calls in
    flight finish in the background (their replies still reach the cache).
    """
    results: list[R | None] = [None] * len(items)
    show = not quiet and sys.stderr.isatty()
    stop = threading.Event()

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
    bar = None
    try:
        futures = {pool.submit(guarded, item): index for index, item in enumerate(items)}
        if show:
            bar = tqdm(total=len(futures), desc=desc, unit="row", file=sys.stderr)
        for future in as_completed(futures):
            if isinstance(future.exception(), _Stopped):
                continue  # a row skipped after a fatal error; that error is raised below
            results[futures[future]] = future.result()
            if on_done is not None:
                on_done(futures[future], future.result())
            if bar is not None:
                bar.update()
    except BaseException:
        # Waiting for the calls in flight (up to --timeout each, times the retries) would make
        # Ctrl-C hang; a fatal error (a refused API key) stops the run just the same.
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    pool.shutdown()
    return results  # type: ignore[return-value]


class _Stopped(Exception):
    """A row not started because another row failed fatally."""
