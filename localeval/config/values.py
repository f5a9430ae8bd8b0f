"""Parsers of the run's structured option values (judges, thresholds, tags, shard, output
path): each takes what a flag, config file or environment variable gave and returns typed values,
or raises ValueError saying what is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..types import COMBINATIONS, ROW_FORMATS, Combination, JudgeSpec, Threshold
from . import options as o
from .options import option

TEMPERATURE = o.number(0, 2)


@dataclass(frozen=True)
class JudgeEntry:
    """A judge as a mapping under `judges:` in a config file."""

    name: str = option(o.REQUIRED, parse=o.non_empty)
    endpoint: str | None = option(None, parse=o.text)
    endpoints: tuple[str, ...] = option((), parse=lambda v: tuple(map(str, o.items(v))))
    temperature: float | None = option(None, parse=TEMPERATURE)
    max_tokens: int | None = option(None, parse=o.integer(1))
    combine: Combination = option("mean", parse=o.choice(*COMBINATIONS))  # mean, majority


def fail(key: str, what: str) -> ValueError:
    return ValueError(f"{key}: {what}")


def judges(values: list[Any]) -> tuple[JudgeSpec, ...]:
    """`NAME`, `NAME@EP`, `NAME@EP1+EP2`, or mappings (a config file's `judges:`)."""
    out = []
    for i, item in enumerate(values):
        if isinstance(item, dict):
            entry = o.record(JudgeEntry, item, f"judges[{i}]", fail)
            endpoints = entry.endpoints or ((entry.endpoint,) if entry.endpoint else ())
            out.append(
                JudgeSpec(entry.name, endpoints, entry.temperature, entry.max_tokens, entry.combine)
            )
        else:
            name, _, endpoints = str(item).partition("@")
            out.append(JudgeSpec(name.strip(), tuple(e.strip() for e in endpoints.split("+") if e)))
    return tuple(out)


def thresholds(values: list[Any]) -> tuple[Threshold, ...]:
    out = []
    for item in values:
        metric, sep, value = o.text(item).rpartition("=")
        if not sep or not metric.strip():
            raise ValueError(f"{item!r} is not METRIC=VALUE")
        try:
            out.append(Threshold(metric.strip(), float(value)))
        except ValueError:
            raise ValueError(f"{item!r} is not METRIC=VALUE with a number") from None
    return tuple(out)


def tags(values: list[Any]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in values:
        key, sep, value = o.text(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item!r} is not KEY=VALUE")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def shard(value: Any) -> tuple[int, int]:
    given = o.text(value)
    part, sep, parts = given.partition("/")
    rule = f"{given!r} is not K/N with 1 <= K <= N (2/4: the second of four parts)"
    try:
        k, n = int(part), int(parts)
    except ValueError:
        raise ValueError(rule) from None
    if not sep or not 1 <= k <= n:
        raise ValueError(rule)
    return k, n


def output(value: Any) -> Path:
    path = Path(o.text(value))
    if path.suffix.lower() not in ROW_FORMATS:
        raise ValueError(
            f"must end in .jsonl (JSON Lines) or .csv, not {path.suffix or 'no extension'!r}"
        )
    return path


def strings(values: list[Any]) -> tuple[str, ...]:
    return tuple(map(str, values))
