"""--agreement RUN_ID: the judge against the grades people gave in MLflow's UI, with no LLM call.

People open a run's rows (its traces) and add feedback named after the judge
(`answer_similarity`) with a grade from 1 to 5, as a human source; or log it with
`mlflow.log_feedback(..., source=AssessmentSource(source_type="HUMAN", ...))`. This reads the
judge's verdicts and those grades from the run's traces, and logs the same agreement metrics a
labelled dataset gives (see `agreement`) to that run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from ..config.settings import EvalConfig
from ..errors import ConfigError
from ..judging.agreement import human_agreement
from ..judging.gate import check_gate
from ..outcome import Outcome
from ..redact import mask
from ..types import Dataset, JudgeInfo, ModelResult, ModelSpec
from .store import default_tracking_uri

LLM_JUDGE, HUMAN = "LLM_JUDGE", "HUMAN"


def _grade(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _per_row(traces: list) -> tuple[dict[str, dict[int, float | None]], dict[str, dict]]:
    """Per judge key: each row's judge score; per judge name: each row's latest human grade."""
    judged: dict[str, dict[int, float | None]] = {}
    people: dict[str, dict[int, tuple[int, float | None]]] = {}
    for trace in traces:
        row = trace.info.trace_metadata.get("localeval.row")
        if row is None:
            continue  # not one of our rows
        for a in trace.info.assessments:
            if a.feedback is None or not a.valid:
                continue
            source = a.source.source_type
            if source == LLM_JUDGE and "metric" in (a.metadata or {}):
                judged.setdefault(a.metadata["metric"], {})[int(row)] = _grade(a.value)
            elif source == HUMAN:
                mine = people.setdefault(a.name, {})
                when = a.last_update_time_ms or a.create_time_ms or 0
                if int(row) not in mine or mine[int(row)][0] <= when:
                    mine[int(row)] = (when, _grade(a.value))
    return judged, {name: {r: g for r, (_, g) in rows.items()} for name, rows in people.items()}


def agreement_run(config: EvalConfig) -> Outcome:
    """Read run `config.agreement`'s verdicts and people's grades; log and return the agreement."""
    tracking_uri = config.tracking_uri or default_tracking_uri()
    client = MlflowClient(tracking_uri)
    run_id = str(config.agreement)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(
            f"--agreement {run_id}: no such run in {mask(tracking_uri)}. Give the id of a run this "
            "tool logged (the run's page in the MLflow UI shows it) and the same --tracking-uri."
        ) from None
    mlflow.set_tracking_uri(tracking_uri)
    traces = mlflow.search_traces(
        locations=[run.info.experiment_id], run_id=run_id, return_type="list", include_spans=False
    )
    judged, people = _per_row(traces)
    if not judged:
        raise ConfigError(
            f"--agreement {run_id}: the run has no judge verdicts in traces (a run from before "
            "traces, or made with --no-traces). Re-run the evaluation, then add feedback."
        )
    params = run.data.params
    rows = int(params.get("dataset_rows", max((max(r) for r in judged.values()), default=0)))
    metrics: dict[str, float] = {}
    result = ModelResult(
        ModelSpec(params.get("model", run.info.run_name), params.get("base_url", "")),
        run_id,
        metrics,
        [],
        tuple(JudgeInfo(*key.split("/", 1), ()) for key in judged),
    )
    notes = []
    for key, scores in judged.items():
        name = key.partition("/")[0]
        grades = people.get(name, {})
        if not grades:
            notes.append(f"{key}: nobody added feedback named {name!r} to this run's rows yet")
            continue
        vs_people = human_agreement(
            [scores.get(i) for i in range(1, rows + 1)],
            [grades.get(i) for i in range(1, rows + 1)],
        )
        if vs_people is None:
            notes.append(f"{key}: the feedback named {name!r} holds no number grade")
            continue
        result.human[key] = vs_people
        metrics.update({f"{key}/{k}": v for k, v in vs_people.metrics.items()})
        result.undefined.update({f"{key}/{k}": why for k, why in vs_people.undefined.items()})
    if metrics:
        client.log_batch(run_id, metrics=[_metric(k, v) for k, v in metrics.items()])
    dataset = Dataset(
        Path(params.get("dataset_name", "dataset")), (), params.get("dataset_digest", "")
    )
    outcome = Outcome(dataset, tracking_uri, run.info.experiment_id, [result], notes=notes)
    outcome.gate_failures = check_gate(config.fail_under, outcome.results)
    return outcome


def _metric(key: str, value: float) -> Metric:
    return Metric(key, value, int(time.time() * 1000), 0)
