"""Datasets from files, turned into typed samples once, at the edge."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError, DataError
from .types import CONTEXT, GROUND_TRUTH, INPUTS, Dataset, Sample

SUFFIXES = (".csv", ".json", ".jsonl", ".parquet")


# With two answer columns, a person's pick between them (A, B or tie), read if present.
PREFERENCE_COL = "human_preference"


@dataclass(frozen=True)
class Columns:
    """Which file columns hold the input, the target and the context."""

    input: str = INPUTS
    target: str = GROUND_TRUTH
    context: str = CONTEXT
    answers: tuple[str, ...] = ()  # --answer-col: answers judged as they are, no candidate call
    preference: str | None = None  # with two answer columns: a person's pick (A, B or tie)
    labels: tuple[tuple[str, str], ...] = ()  # (judge name, column of a person's grades)


def _preference(path: Path, row: int, record: dict[str, Any], column: str | None) -> str | None:
    """A person's pick of the two answer columns: A (the first), B (the second) or tie (C too);
    an empty cell is no preference."""
    value = _text(record.get(column)) if column else None
    if value is None:
        return None
    pick = {"a": "a", "b": "b", "tie": "tie", "c": "tie"}.get(value.strip().lower())
    if pick is None:
        raise DataError(
            f"Data file {path}, row {row}, column {column!r}: {value!r} is not a preference. "
            "Write A (the first answer column is better), B (the second) or tie, or leave it "
            "empty."
        )
    return pick


def _read_records(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"Data file {path}: unsupported file type {suffix or '(none)'!r}. "
            f"Use one of {', '.join(SUFFIXES)}."
        )
    try:
        if suffix == ".parquet":  # pyarrow costs ~0.3 s to import: only for Parquet files
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"Data file {path} does not exist. Check the --data path.") from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"Data file {path} is not valid UTF-8 (byte {exc.start}): save it as UTF-8 and retry."
        ) from None
    except OSError as exc:
        raise DataError(f"Data file {path} cannot be read: {exc}.") from None
    except Exception as exc:  # pyarrow's errors have no common base worth importing here
        raise DataError(f"Data file {path} is not a readable Parquet file: {exc}.") from None
    if suffix == ".csv":
        text = text.removeprefix("\ufeff")  # Excel writes a BOM
        try:
            return list(csv.DictReader(io.StringIO(text, newline="")))
        except csv.Error as exc:
            raise DataError(f"Data file {path} is not valid CSV: {exc}.") from None
    if suffix == ".jsonl":
        records = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"Data file {path}, line {line_no}: not valid JSON ({exc.msg}). "
                    "Each line of a .jsonl file must be one JSON object."
                ) from None
        return records
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"Data file {path}, line {exc.lineno}: not valid JSON ({exc.msg})."
        ) from None
    if not isinstance(loaded, list):
        raise DataError(
            f"Data file {path}: a .json file must hold a list of records "
            '([{"inputs": ..., "ground_truth": ...}, ...]).'
        )
    return loaded


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):  # NaN from Parquet
        return None
    if isinstance(value, list):  # a context given as a list of passages
        return "\n\n".join(str(v) for v in value if v is not None) or None
    text = str(value).strip()
    return text or None


def _labels(
    path: Path, row: int, record: dict[str, Any], columns: tuple[tuple[str, str], ...]
) -> dict[str, float]:
    """A person's grades on this row, per judge: a number, or nothing where the cell is empty."""
    out = {}
    for judge, column in columns:
        text = _text(record.get(column))
        if text is None:
            continue  # not labelled: ignored by the agreement statistics
        try:
            out[judge] = float(text)
        except ValueError:
            raise DataError(
                f"Data file {path}, row {row}, column {column!r}: {text!r} is not a grade (a "
                "number such as 4, or empty for an unlabelled row)."
            ) from None
    return out


def human_columns(given: Sequence[str], judges: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """--human-col values as (judge name, column): `JUDGE=COL`, or `COL` with a single judge."""
    out = []
    for item in given:
        judge, sep, column = item.rpartition("=")
        if not sep:
            if len(judges) != 1:
                raise ConfigError(
                    f"--human-col {item}: with several judges ({', '.join(judges)}) say whose "
                    f"grades the column holds: --human-col {judges[0]}={item}."
                )
            judge = judges[0]
        if judge not in judges:
            raise ConfigError(
                f"--human-col {item}: no judge {judge!r} in this run ({', '.join(judges)})."
            )
        out.append((judge, column))
    return tuple(out)


def load_dataset(
    path: Path,
    columns: Columns = Columns(),
    need_target: bool = True,
    need_context: bool = False,
    need_extra: tuple[str, ...] = (),
    needed_by: dict[str, str] | None = None,
    judges: tuple[str, ...] = (),
    shard: tuple[int, int] | None = None,
) -> Dataset:
    """Read a CSV, JSON, JSONL or Parquet file into samples, or raise DataError naming the fault.

    Args:
        need_target: every row must have a ground truth (a judge compares against it).
        need_context: every row must have a context (a judge grades against it).
        need_extra: other columns every row must fill (a custom judge's grading context).
        needed_by: for the messages, which judges need a column ("context" -> "faithfulness").
        judges: judge names whose `human_<name>` column, if the data has one, holds a person's
            grades (`columns.labels` names other columns).
        shard: (K, N): only part K of N of the rows (`shard_of`).
    """
    needed_by = needed_by or {}
    path = Path(path)
    records = _read_records(path)
    if not records:
        raise DataError(f"Data file {path} has no rows.")
    present = set().union(*(r.keys() for r in records if isinstance(r, dict)))

    def why(role: str, what: str) -> str:
        return f"{what}, needed by {needed_by[role]}" if role in needed_by else what

    required = [(columns.input, "map it with --input-col", "the question")]
    if need_target:
        required.append(
            (columns.target, "map it with --target-col", why("targets", "the expected answer"))
        )
    if need_context:
        required.append(
            (columns.context, "map it with --context-col", why("context", "the retrieval context"))
        )
    for extra in need_extra:
        required.append(
            (extra, "change the judge's grading_context_columns", why(extra, "grading context"))
        )
    for answer in columns.answers:
        required.append((answer, "pick another with --answer-col", "the answer to judge"))
    two = len(columns.answers) == 2  # a person's pick between two answer columns
    preference = columns.preference if two and columns.preference in present else None
    found = tuple((j, f"human_{j}") for j in judges if f"human_{j}" in present)
    named = {judge for judge, _ in columns.labels}
    labels = columns.labels + tuple(pair for pair in found if pair[0] not in named)
    for judge, column in labels:
        if column not in present:
            raise DataError(
                f"Data file {path} has no column {column!r} (a person's grades for {judge}, "
                f"--human-col); its columns are {sorted(present)}."
            )
    for column, flag, what in required:
        if column not in present:
            raise DataError(
                f"Data file {path} has no column {column!r} ({what}); its columns are "
                f"{sorted(present)}. Rename the column or {flag}."
            )
    samples = []
    for index, record in enumerate(records):
        row = index + 1  # 1-based, as a person counts data rows (CSV header excluded)
        if not isinstance(record, dict):
            raise DataError(f"Data file {path}, row {row}: expected an object, got {record!r}.")
        named = (columns.input, columns.target, columns.context, *columns.answers, *need_extra)
        values = {c: _text(record.get(c)) for c in named if c is not None}
        for column, _flag, what in required:
            if values[column] is None:
                raise DataError(
                    f"Data file {path}, row {row}, column {column!r}: empty ({what} is "
                    "required). Fill it in or remove the row."
                )
        used = {columns.input, columns.target, columns.context, *columns.answers, preference}
        used.update(column for _, column in labels)
        samples.append(
            Sample(
                id=str(record.get("id") or row),
                input=values[columns.input],
                target=values[columns.target],
                context=values[columns.context],
                metadata={k: v for k, v in record.items() if k not in used and k != "id"},
                answers={c: values[c] for c in columns.answers},
                preference=_preference(path, row, record, preference),
                labels=_labels(path, row, record, labels),
            )
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    dataset = Dataset(path=path, samples=tuple(samples), digest=digest)
    return dataset if shard is None else shard_of(dataset, *shard)


def shard_of(dataset: Dataset, part: int, parts: int) -> Dataset:
    """Part `part` (1-based) of `parts` of the rows, contiguous; its digest names the part, so
    `--baseline last` compares a part with the same part."""
    count = len(dataset.samples)
    start, end = (part - 1) * count // parts, part * count // parts
    if start == end:
        raise DataError(
            f"Data file {dataset.path} has {count} rows, too few for --shard {part}/{parts}: "
            f"part {part} would be empty. Use at most {count} parts."
        )
    return replace(
        dataset, samples=dataset.samples[start:end], digest=f"{dataset.digest}-{part}of{parts}"
    )
