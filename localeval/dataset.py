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
from .types import CONTEXT, GROUND_TRUTH, INPUTS, Dataset, Sample, Turn

SUFFIXES = (".csv", ".json", ".jsonl", ".parquet")


# With two answer columns, a person's pick between them (A, B or tie), read if present.
PREFERENCE_COL = "human_preference"
# A conversational row: its list of user turns, and optionally its own system prompt.
TURNS, SYSTEM_PROMPT = "turns", "system_prompt"


@dataclass(frozen=True)
class Columns:
    """Which file columns hold the input, the target and the context."""

    input: str = INPUTS
    target: str = GROUND_TRUTH
    context: str = CONTEXT
    answers: tuple[str, ...] = ()  # --answer-col: answers judged as they are, no candidate call
    preference: str | None = None  # with two answer columns: a person's pick (A, B or tie)
    labels: tuple[tuple[str, str], ...] = ()  # (judge name, column of a person's grades)
    turns: str = TURNS  # a conversation's user turns (a list), one row per conversation


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
    every_target: bool = True,
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
        every_target: with need_target, every row (every turn) must fill it (--require-reference);
            else only the column must exist, and a row without one is not applicable to the
            judges that compare against it.
    """
    needed_by = needed_by or {}
    path = Path(path)
    records = _read_records(path)
    if not records:
        raise DataError(f"Data file {path} has no rows.")
    present = set().union(*(r.keys() for r in records if isinstance(r, dict)))

    def why(role: str, what: str) -> str:
        return f"{what}, needed by {needed_by[role]}" if role in needed_by else what

    conversational = columns.turns in present
    if conversational and columns.input in present:
        kinds = [(columns.turns in r, columns.input in r) for r in records if isinstance(r, dict)]
        turn_row = next(i for i, (t, _) in enumerate(kinds, 1) if t)
        input_row = next(i for i, (_, q) in enumerate(kinds, 1) if q)
        raise DataError(
            f"Data file {path} mixes single questions (column {columns.input!r}, row "
            f"{input_row}) and conversations (column {columns.turns!r}, row {turn_row}): a "
            "dataset is one or the other. Put them in two files, or write each single question "
            f'as a conversation of one turn ({{"{columns.turns}": ["the question"]}}).'
        )
    if conversational and columns.answers:
        raise DataError(
            f"Data file {path} holds conversations (column {columns.turns!r}): --answer-col "
            "judges answers from single-question data only. Drop --answer-col to ask a model."
        )
    if conversational:
        required = [(columns.turns, "map it with --turns-col", "the user's turns")]
    else:
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
    samples: list[Sample] = []
    targets = why("targets", "the expected answer") if need_target and every_target else None
    others, seen = [r for r in required[1:] if r[0] != columns.target], set[str]()
    for index, record in enumerate(records):
        row = index + 1  # 1-based, as a person counts data rows (CSV header excluded)
        if not isinstance(record, dict):
            raise DataError(f"Data file {path}, row {row}: expected an object, got {record!r}.")
        if conversational:
            samples += _conversation(path, row, record, columns, targets, others, seen)
            continue
        named = (columns.input, columns.target, columns.context, *columns.answers, *need_extra)
        values = {c: _text(record.get(c)) for c in named if c is not None}
        for column, _flag, what in required:
            if column == columns.target and need_target and not every_target:
                continue  # not applicable to the judges that need it (`grading`)
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


def _listed(path: Path, row: int, column: str, value: Any, what: str) -> list[Any] | None:
    """A cell holding a list: JSON's own, or a JSON string (a CSV cell); None when empty."""
    where = f"Data file {path}, row {row}, column {column!r}"
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(
                f"{where}: {value[:60]!r} is not a JSON list ({what}). Write it as a list, "
                '["first turn", "second turn"] (in a CSV cell, that JSON text).'
            ) from None
    if value is None:
        return None
    if not isinstance(value, list):
        raise DataError(f'{where}: {value!r} is not a list ({what}). Write ["...", "..."].')
    return value


def _conversation(
    path: Path,
    row: int,
    record: dict[str, Any],
    columns: Columns,
    target_needed: str | None,
    required: list[tuple[str, str, str]],
    seen: set[str],
) -> list[Sample]:
    """One conversation's row as one sample per turn, each with the user's turns before it.

    Args:
        target_needed: what needs every turn's reference (--require-reference), or None.
        required: the other columns every row must fill (context, grading columns).
        seen: the conversations' ids so far (this one's is added).
    """
    where = f"Data file {path}, row {row}"
    conversation = str(record.get("id") or row)
    if conversation in seen:
        raise DataError(
            f"{where}, column 'id': {conversation!r} names an earlier conversation too. Give "
            "each conversation its own id."
        )
    seen.add(conversation)
    turns = _listed(path, row, columns.turns, record.get(columns.turns), "the user's turns")
    if not turns:
        raise DataError(
            f"{where}, column {columns.turns!r}: empty. A conversation needs at least one user "
            "turn; fill it in or remove the row."
        )
    for k, turn in enumerate(turns, start=1):
        if not isinstance(turn, str) or not turn.strip():
            raise DataError(
                f"{where}, column {columns.turns!r}: turn {k} is {turn!r}, not a question. "
                "Each turn is the user's message, a non-empty string."
            )
    what = "a reference answer per turn"
    refs = _listed(path, row, columns.target, record.get(columns.target), what)
    if refs is not None and len(refs) != len(turns):
        raise DataError(
            f"{where}, column {columns.target!r}: {len(refs)} reference answers for "
            f"{len(turns)} turns. Give one per turn, an empty string where there is none."
        )
    refs = refs or [None] * len(turns)
    for k, ref in enumerate(refs, start=1):
        if ref is not None and not isinstance(ref, str):
            raise DataError(
                f"{where}, column {columns.target!r}: the reference of turn {k} is {ref!r}, not "
                "a text. Write it as a string, or an empty string where there is none."
            )
        if target_needed and not (ref or "").strip():
            raise DataError(
                f"{where}, column {columns.target!r}: turn {k} has no reference ({target_needed}"
                ", is required with --require-reference). Fill it in, or run without "
                "--require-reference to skip the turns without one."
            )
    for column, _flag, needed in required:
        if _text(record.get(column)) is None:
            raise DataError(
                f"{where}, column {column!r}: empty ({needed} is required). Fill it in or "
                "remove the row."
            )
    system, context = _text(record.get(SYSTEM_PROMPT)), _text(record.get(columns.context))
    used = {columns.turns, columns.target, columns.context, SYSTEM_PROMPT, "id"}
    metadata, questions = (
        {k: v for k, v in record.items() if k not in used},
        [t.strip() for t in turns],
    )
    return [
        Sample(
            id=f"{conversation}/{k}",
            input=question,
            target=_text(ref),
            context=context,
            metadata=metadata,
            turn=Turn(conversation, k, len(turns), tuple(questions[: k - 1]), (), system),
        )
        for k, (question, ref) in enumerate(zip(questions, refs), start=1)
    ]


def shard_of(dataset: Dataset, part: int, parts: int) -> Dataset:
    """Part `part` (1-based) of `parts` of the rows, contiguous, a conversation's turns never
    split (each is asked with the turns before it); its digest names the part, so
    `--baseline last` compares a part with the same part."""
    samples = dataset.samples
    firsts = [i for i, s in enumerate(samples) if s.turn is None or s.turn.number == 1]
    count, bounds = len(firsts), [*firsts, len(samples)]
    unit = "conversations" if count < len(samples) else "rows"
    start, end = (part - 1) * count // parts, part * count // parts
    if start == end:
        raise DataError(
            f"Data file {dataset.path} has {count} {unit}, too few for --shard {part}/{parts}: "
            f"part {part} would be empty. Use at most {count} parts."
        )
    digest = f"{dataset.digest}-{part}of{parts}"
    return replace(dataset, samples=samples[bounds[start] : bounds[end]], digest=digest)
