"""Progress of a phase over rows: a tqdm bar in a terminal, plain lines in a log, or nothing.

Without a terminal (CI logs, `| tee`) a bar would be one ever-rewritten line or nothing at all;
a line every tenth of the rows, or every `EVERY_S` seconds, whichever comes first, shows that the
run is alive and when it will end.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import IO

from tqdm import tqdm

EVERY_S = 10.0  # the longest silence in a log while a phase runs
STEPS = 10  # a line every 1/STEPS of the rows...
GAP_S = (
    1.0  # ...but not sooner than this after the last: a phase of cached replies says only "done"
)


class Progress:
    """What a phase reports: a row done, time passing, the end. This one says nothing (--quiet)."""

    def update(self) -> None:
        """One more row done."""

    def tick(self) -> None:
        """Time passed (called at least every `wait_s` seconds)."""

    def close(self) -> None:
        """The phase ended, done or stopped."""

    def wait_s(self) -> float | None:
        """How long the caller may wait for the next row before calling `tick` (None: forever)."""
        return None


class _Bar(Progress):
    """tqdm's bar on a terminal: rows/s and ETA, redrawn in place."""

    def __init__(self, desc: str, total: int, stream: IO[str]) -> None:
        self._bar = tqdm(total=total, desc=desc, unit="row", file=stream)

    def update(self) -> None:
        self._bar.update()

    def close(self) -> None:
        self._bar.close()


def _seconds(s: float) -> str:
    """`4.2 s`, `42 s`, `7 min 02 s`."""
    if s < 10:
        return f"{s:.1f} s"
    if s < 120:
        return f"{s:.0f} s"
    minutes, seconds = divmod(round(s), 60)
    return f"{minutes} min {seconds:02d} s"


class Lines(Progress):
    """A plain line per tenth of the rows or per `every_s` seconds, whichever comes first, and
    one at the end."""

    def __init__(
        self,
        desc: str,
        total: int,
        stream: IO[str],
        every_s: float = EVERY_S,
        gap_s: float = GAP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.desc, self.total, self.stream = desc, total, stream
        self.every_s, self.gap_s = every_s, gap_s
        self._clock = clock
        self.done = 0
        self._step = max(1, math.ceil(total / STEPS))
        self._started = self._last = self._clock()

    def update(self) -> None:
        self.done += 1
        step = self.done < self.total and self.done % self._step == 0
        if step and self._clock() - self._last >= self.gap_s:
            self._print()

    def tick(self) -> None:
        if self._clock() - self._last >= self.every_s:
            self._print()

    def wait_s(self) -> float | None:
        return max(0.0, self._last + self.every_s - self._clock())

    def close(self) -> None:
        elapsed = self._clock() - self._started
        if self.done == self.total:
            self._write(f"{self.desc} {self.done}/{self.total} done in {_seconds(elapsed)}")
        else:
            self._write(
                f"{self.desc} stopped at {self.done}/{self.total} after {_seconds(elapsed)}"
            )

    def _print(self) -> None:
        elapsed = self._clock() - self._started
        line = f"{self.desc} {self.done}/{self.total}, {_seconds(elapsed)}"
        if self.done:
            line += f", ~{_seconds(elapsed / self.done * (self.total - self.done))} left"
        self._write(line)

    def _write(self, line: str) -> None:
        self._last = self._clock()
        print(line, file=self.stream, flush=True)


def progress(desc: str, total: int, quiet: bool = False) -> Progress:
    """The reporter for a phase of `total` rows: a bar on a terminal, lines otherwise."""
    stream = sys.stderr
    if quiet or total == 0:
        return Progress()
    if stream.isatty():
        return _Bar(desc, total, stream)
    return Lines(desc, total, stream, EVERY_S, GAP_S)
