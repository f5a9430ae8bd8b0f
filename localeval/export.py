"""Exports for scripts and CI: per-row results as JSON Lines or CSV, aggregates as JSON beside them.

`--output results.jsonl` writes `results.jsonl` (one object per row and model) and
`results.aggregates.json` (each model's metrics, the paired comparisons, the gate's verdict).
"""

from __future__ import annotations

import contextlib
import csv
import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EvalError

if TYPE_CHECKING:
    from .runner import Outcome

ROW_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


def row_format(path: Path) -> str:
    """'jsonl' or 'csv' from the file name; a ValueError for anything else."""
    fmt = ROW_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"must end in .jsonl (JSON Lines) or .csv, not {path.suffix or 'no extension'!r}"
        )
    return fmt


def aggregates_path(path: Path) -> Path:
    """Where the aggregates go: `results.jsonl` -> `results.aggregates.json`."""
    return path.with_name(f"{path.stem}.aggregates.json")


def _plain(value: Any) -> Any:
    """A JSON-ready value: numpy scalars unwrapped, NaN and pandas.NA as None."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        with contextlib.suppress(ValueError, TypeError):  # a non-scalar array
            value = value.item()
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return None if value != value else value
    try:
        if value != value:  # NaN-like
            return None
    except (TypeError, ValueError):  # pandas.NA refuses bool()
        return None
    return str(value)


def rows(outcome: Outcome) -> list[dict[str, Any]]:
    """Every row of every model's eval table, with the model, its run and the row number."""
    out = []
    for result in outcome.results:
        for index, record in enumerate(result.table.to_dict("records")):
            row = {"model": result.model.id, "run_id": result.run_id, "row": index + 1}
            row.update({str(k): _plain(v) for k, v in record.items()})
            out.append(row)
    return out


def aggregates(outcome: Outcome) -> dict[str, Any]:
    """The run's aggregates: per model its run and metrics, plus comparisons and the gate."""

    def comparison(c: Any) -> dict[str, Any]:
        detail = asdict(c.result) if is_dataclass(c.result) else dict(vars(c.result))
        return {"a": c.a, "b": c.b, "metric": c.metric, **{k: _plain(v) for k, v in detail.items()}}

    return {
        "experiment_id": outcome.experiment_id,
        "parent_run_id": outcome.parent_run_id,
        "dataset": {
            "name": outcome.dataset.name,
            "digest": outcome.dataset.digest,
            "rows": len(outcome.dataset.samples),
        },
        "models": {
            r.model.id: {
                "base_url": r.model.base_url,
                "run_id": r.run_id,
                "failed_rows": r.failed_rows,
                "metrics": {k: _plain(v) for k, v in sorted(r.metrics.items())},
            }
            for r in outcome.results
        },
        "comparisons": [comparison(c) for c in outcome.comparisons],
        "gate_failures": list(outcome.gate_failures),
        "failed_rows": outcome.failed_rows,
        "notes": list(outcome.notes),
    }


def _csv_text(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def write_exports(outcome: Outcome, path: Path) -> tuple[Path, Path]:
    """Write the per-row file at `path` and the aggregates beside it; returns both paths."""
    fmt = row_format(path)
    records = rows(outcome)
    summary = aggregates_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as out:
            if fmt == "jsonl":
                for record in records:
                    out.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
            else:
                columns = list(dict.fromkeys(k for record in records for k in record))
                writer = csv.DictWriter(out, fieldnames=columns)
                writer.writeheader()
                for record in records:
                    writer.writerow({k: _csv_text(v) for k, v in record.items()})
        summary.write_text(
            json.dumps(aggregates(outcome), ensure_ascii=False, allow_nan=False, indent=2) + "\n",
            encoding="utf-8",
        )
    except OSError as exc:
        raise EvalError(
            f"Could not write the results to {path} / {summary}: {exc}. The run itself was "
            "logged in MLflow."
        ) from None
    return path, summary
