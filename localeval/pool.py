"""A bounded thread pool that keeps row order and shows progress."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_ordered(
    fn: Callable[[T], R], items: Sequence[T], concurrency: int, desc: str, quiet: bool = False
) -> list[R]:
    """Apply `fn` to every item on at most `concurrency` threads; results in the items' order.

    A progress bar (rows/s and ETA) goes to stderr when it is a terminal and `quiet` is off.
    """
    results: list[R | None] = [None] * len(items)
    show = not quiet and sys.stderr.isatty()
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix=desc) as pool:
        futures = {pool.submit(fn, item): index for index, item in enumerate(items)}
        done = as_completed(futures)
        if show:
            from tqdm import tqdm

            done = tqdm(done, total=len(futures), desc=desc, unit="row", file=sys.stderr)
        try:
            for future in done:
                results[futures[future]] = future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return results  # type: ignore[return-value]
