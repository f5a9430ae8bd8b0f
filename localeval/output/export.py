"""Exports for scripts and CI: per-row results as JSON Lines or CSV, aggregates as JSON beside them.

`--output results.jsonl` writes `results.jsonl` (one object per row and model) and
`results.aggregates.json` (each model's metrics, the paired comparisons, the gate's verdict).
Both are rendered from the typed results, like the terminal and HTML reports.
"""

from __future__ import annotations

import csv
import json
import math
import numbers
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import EvalError
from ..judging.pairs import HeadToHead, pair_metrics
from ..outcome import Outcome
from ..redact import mask
from ..types import ANSWER, CONTEXT, GROUND_TRUTH, INPUTS, ROW_FORMATS, Comparison
from .present import justification_text, score_of


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
    """A JSON-ready value: NaN and infinities (which JSON cannot hold) as None."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Integral):  # also a numpy integer, without importing numpy
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    return str(value)


def rows(outcome: Outcome) -> list[dict[str, Any]]:
    """Every row of every model: the sample, the answer or its failure, usage, every score."""
    dataset = outcome.dataset
    out = []
    for result in outcome.results:
        for row in result.rows:
            record: dict[str, Any] = {
                "model": result.model.id,
                "run_id": result.run_id,
                "row": row.index + 1,
                # The file's own id, or its row number there: unique across --shard parts.
                "id": row.sample.id,
                INPUTS: row.sample.input,
            }
            if (turn := row.sample.turn) is not None:  # a turn of a conversation
                record.update(conversation=turn.conversation, turn=turn.number, turns=turn.count)
            if dataset.has_targets:
                record[GROUND_TRUTH] = row.sample.target
            if dataset.has_context:
                record[CONTEXT] = row.sample.context
            answer, call = row.answer, row.answer.call
            record[ANSWER] = "" if answer.failed else (answer.text or "")
            record["candidate_error"] = answer.error or ""
            record["latency_s"] = None if call is None else _plain(call.latency_s)
            record["prompt_tokens"] = None if call is None else call.prompt_tokens
            record["completion_tokens"] = None if call is None else call.completion_tokens
            record["cached"] = None if call is None else call.cached
            for key, value in row.metrics.items():
                record[f"{key}/score"] = _plain(value)
            for judge in result.judges:
                score = score_of(row, judge.key)
                record[f"{judge.key}/score"] = _plain(score.value)
                # The text MLflow's results table shows; the reason is also a column of its own.
                record[f"{judge.key}/justification"] = justification_text(score)
                record[f"{judge.key}/unscored_reason"] = score.reason
            out.append(record)
    return out


def _comparison(c: Comparison) -> dict[str, Any]:
    detail = {k: _plain(v) for k, v in asdict(c.result).items()}
    return {"a": c.a, "b": c.b, "metric": f"{c.judge}/score", **detail}


def aggregates(outcome: Outcome) -> dict[str, Any]:
    """The run's aggregates: per model its run and metrics, plus comparisons and the gate."""
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
                "base_url": mask(r.model.base_url),
                "run_id": r.run_id,
                "failed_rows": r.failed_rows,
                "metrics": {k: _plain(v) for k, v in sorted(r.metrics.items())},
                "vs_baseline": [_comparison(c) for c in r.vs_baseline],
                "undefined": dict(sorted(r.undefined.items())),
                "warnings": list(r.warnings),
                "human": {
                    key: {"grades": list(a.grades), "matrix": [list(row) for row in a.matrix]}
                    for key, a in r.human.items()
                },
            }
            for r in outcome.results
        },
        "comparisons": [_comparison(c) for c in outcome.comparisons],
        "head_to_head": [_pair(h) for h in outcome.head_to_head],
        "strengths": [vars(s) for s in outcome.strengths],
        "gate_failures": list(outcome.gate_failures),
        "failed_rows": outcome.failed_rows,
        "notes": list(outcome.notes),
    }


def _pair(h: HeadToHead) -> dict[str, Any]:
    """A pair of versions head to head: its metrics and every row's verdicts."""
    rows = [
        {"row": i + 1, "verdict": r.outcome, "consistent": r.consistent, "a_first": r.a_first.pick,
         "b_first": r.b_first.pick, "unscored_reason": r.reason, "human": r.human}
        for i, r in enumerate(h.rows)
    ]  # fmt: skip
    metrics = {k: _plain(v) for k, v in sorted(pair_metrics(h).items())}
    return {"a": h.a, "b": h.b, "prompt_version": h.version, "metrics": metrics, "rows": rows}


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
