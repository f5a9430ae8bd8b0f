"""The MLflow side of a run: the experiment, each model's run with its params, logged model,
`mlflow.evaluate` over the typed results, metrics and artifacts.

This is the one module that calls `mlflow.evaluate`, deprecated since MLflow 3.x but working in
the pinned 3.18 (the design card names it).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import mlflow
import mlflow.openai
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import LoggedModelInput
from mlflow.exceptions import MlflowException

from ..candidate.model import answer_frame
from ..judging.agreement import human_agreement
from ..judging.figures import aggregates, by_turn
from ..judging.grading import verdict_records
from ..judging.judges import JudgeDef
from ..serving.servers import telemetry_off
from ..types import (
    ANSWER,
    CONTEXT,
    CONTEXT_ROLE,
    GROUND_TRUTH,
    INPUTS,
    TARGETS_ROLE,
    Dataset,
    ModelResult,
    ModelSpec,
    RowResult,
)
from ..workspace import alive
from .metrics import judge_metric, offline_metrics, readability_unavailable
from .store import creating, sqlite_path

# How mlflow.genai.evaluate marks its runs (mlflow.utils.mlflow_tags).
RUN_TYPE_TAG, RUN_TYPE_GENAI_EVALUATE = "mlflow.runType", "genai_evaluate"
# Loggers whose INFO lines would bury our output (MLflow's run URLs, migrations, HTTP traces).
_LOUD_LOGGERS = {"mlflow": logging.ERROR, "alembic": logging.WARNING, "httpx2": logging.WARNING,
                 "openai": logging.WARNING}  # fmt: skip
# The deprecation notices the pinned versions print on every run: expected, not news.
_EXPECTED_WARNINGS = (
    (FutureWarning, r"mlflow"),
    (DeprecationWarning, r"mlflow|pydantic|pkg_resources"),
)


def log_text(tracking_uri: str) -> Callable[[str, str, str], object]:
    """What logs a text as an artifact of a run in this store: (run id, text, artifact path)."""
    return MlflowClient(tracking_uri).log_text


@contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow's and LangChain's expected notices off, telemetry off, no download bars; all of
    it restored on exit (warning filters, logger levels and environment variables)."""
    saved_env = dict(os.environ)
    levels = {name: logging.getLogger(name).level for name in _LOUD_LOGGERS}
    with warnings.catch_warnings():
        for category, modules in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", category=category, module=modules)
            warnings.filterwarnings("ignore", category=category, message=rf".*({modules}).*")
        warnings.filterwarnings("ignore", message=r".*Pydantic.*")
        # We log a signature on purpose: an input example would make an LLM call at log time.
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        # mlflow.evaluate infers a schema for the frame it logs as the run's dataset; with the
        # answers as columns (conversations, --answer-col) their token counts are integers, and
        # it warns about missing values at inference time: there is no inference of that frame.
        warnings.filterwarnings("ignore", message=".*Inferred schema contains integer column.*")
        os.environ.update(telemetry_off(dict(os.environ)))
        # MLflow draws a "Downloading artifacts" bar each time evaluate loads the logged model.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        for name, level in _LOUD_LOGGERS.items():
            logging.getLogger(name).setLevel(level)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
            os.environ.clear()
            os.environ.update(saved_env)


def _sqlite_wal(tracking_uri: str) -> None:
    """Put a SQLite store in write-ahead-log mode (it stays so: the mode lives in the file).

    MLflow opens SQLite in rollback-journal mode with a full sync per commit; a trace per row is
    a commit per row, and in WAL mode 200 of them took 0.78 s instead of 1.31 s. Readers (the
    MLflow UI) no longer block the writer either.
    """
    path = sqlite_path(tracking_uri)
    if path is None or not path.parent.is_dir():
        return  # MLflow's own error says what is wrong with the path
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def open_experiment(tracking_uri: str, name: str) -> str:
    """Point MLflow at the store and the experiment; returns the experiment id."""
    # mlflow.evaluate turns on OpenAI autolog tracing while it runs (our client is the openai
    # SDK): a trace per LLM call (every prompt stored again) written from a background queue.
    # Our own calls are made before evaluate; off, so the logged model's memo lookups make no
    # traces either. (Each row's trace is ours: `traces`.)
    mlflow.openai.autolog(disable=True)
    mlflow.set_tracking_uri(tracking_uri)
    # One process at a time creates the store (and the experiment): see `store.creating`.
    with creating(tracking_uri):
        _sqlite_wal(tracking_uri)
        experiment_id = mlflow.set_experiment(name).experiment_id
        # When another process created it between MLflow's lookup and its insert, MLflow 3.17's
        # set_experiment returns it without making it active: the run went to "Default" (one in
        # six with three runs at once into a new experiment on a server). By id, it is active.
        return mlflow.set_experiment(experiment_id=experiment_id).experiment_id


# Who runs a run, so that a run left RUNNING by a killed process can be told from a live one.
HOST_TAG, PID_TAG, STARTED_TAG = "localeval.host", "localeval.pid", "localeval.started"


def close_killed_runs(experiment_id: str) -> list[str]:
    """Mark KILLED the runs of ours left RUNNING by a process of this host that is gone (a
    SIGKILL leaves no chance to close them); one note per run."""
    host = socket.gethostname()
    client = MlflowClient()
    left = client.search_runs(
        [experiment_id],
        f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
        max_results=1000,
    )
    notes = []
    for run in left:
        pid = run.data.tags.get(PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            client.set_terminated(run.info.run_id, "KILLED")
            notes.append(
                f"run {run.info.run_id} ({run.info.run_name}, started "
                f"{run.data.tags.get(STARTED_TAG, '?')}) was left RUNNING by process {pid}, which "
                "is gone: marked KILLED."
            )
    return notes


@dataclass(frozen=True)
class RunPlan:
    """What every model's run shares: the data, the judges and the params to log."""

    dataset: Dataset
    judges: Sequence[JudgeDef]
    params: dict[str, str]
    repeats: int


def eval_frame(dataset: Dataset, judges: Sequence[JudgeDef]) -> Any:
    """The frame mlflow.evaluate reads: the questions and what the judges grade against."""
    frame = pd.DataFrame({INPUTS: [s.input for s in dataset.samples]})
    if dataset.has_targets:
        frame[GROUND_TRUTH] = [s.target or "" for s in dataset.samples]
    if dataset.has_context:
        frame[CONTEXT] = [s.context or "" for s in dataset.samples]
    for column in sorted({c for j in judges for c in j.grading_context_columns}):
        if column not in (TARGETS_ROLE, CONTEXT_ROLE):  # a custom judge's own grading column
            frame[column] = [str(s.metadata.get(column, "")) for s in dataset.samples]
    return frame


def user_tags(tags: Sequence[tuple[str, str]], nested: bool = False) -> dict[str, str]:
    """`--tag`s for a run; a run nested under our own parent keeps its parent (MLflow's
    `mlflow.*` tags, such as mlflow.parentRunId, go to the top run only)."""
    return {k: v for k, v in tags if not (nested and k.startswith("mlflow."))}


def name_apart(run_id: str, stem: str) -> None:
    """A run's default name: `stem` and the start of its id, so that two runs of one model are
    told apart in MLflow's run lists (the id, not the time: two runs may start in one second)."""
    MlflowClient().update_run(run_id, name=f"{stem} {run_id[:8]}")


@contextmanager
def model_run(
    spec: ModelSpec,
    params: dict[str, str],
    model_id: str | None,
    tags: Sequence[tuple[str, str]] = (),
    name: str | None = None,
) -> Iterator[str]:
    """One model's MLflow run, open while its rows are answered and graded; yields its id.

    Marked as `mlflow.genai.evaluate` marks its runs: the `mlflow.runType` tag, the model as an
    input. MLflow's UI lists a run under "Evaluation runs" only when it has no model *output*,
    which is why the candidate is logged before the run starts (`log_candidate`).
    """
    nested = mlflow.active_run() is not None
    with mlflow.start_run(run_name=name or spec.id, nested=nested) as run:
        mlflow.set_tags(
            {
                **user_tags(tags, nested),
                RUN_TYPE_TAG: RUN_TYPE_GENAI_EVALUATE,
                HOST_TAG: socket.gethostname(),
                PID_TAG: str(os.getpid()),
                STARTED_TAG: time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        mlflow.log_params(params)
        if model_id is not None:
            MlflowClient().log_inputs(run.info.run_id, models=[LoggedModelInput(model_id)])
        if name is None and not nested:
            name_apart(run.info.run_id, spec.id)
        yield run.info.run_id


# Imported only once the rows are answered and graded (about 2 s together on 2 cores): the
# bootstrap's SciPy, the readability metrics' textstat, and the scikit-learn that mlflow.evaluate's
# built-in evaluators and our statistics import. Never an MLflow module: MLflow's import hooks
# hold one global lock while a hooked module's hooks import (its evaluator registry does), and a
# second thread importing then can deadlock with it (seen here: the registry on this thread,
# openai's types on a call thread).
_AFTER_THE_CALLS = ("scipy.stats", "sklearn.metrics", "sklearn.linear_model")


def warm_up() -> threading.Thread:
    """Import what the run needs after its LLM calls, on a thread, while those calls wait on
    the servers: the seconds are hidden behind the calls instead of added after them. Joined
    before mlflow.evaluate (whose import hooks must not meet another importing thread). Only a
    head start: a module that fails here is imported again where it is used, and fails there."""

    def work() -> None:
        for name in _AFTER_THE_CALLS:
            with contextlib.suppress(Exception):
                importlib.import_module(name)
        readability_unavailable()  # textstat, and its dictionary loaded on first use

    thread = threading.Thread(target=work, name="warm-up", daemon=True)
    thread.start()
    return thread


def finish_model_run(
    plan: RunPlan,
    spec: ModelSpec,
    run_id: str,
    rows: list[RowResult],
    model_uri: str | None,
    timings: dict[str, float] | None = None,
) -> tuple[ModelResult, list[str]]:
    """In the open run: mlflow.evaluate over the rows, metrics, artifacts.

    Args:
        model_uri: the logged candidate, which mlflow.evaluate calls (answered from the run's
            memo); None when the answers came from the data (then read as a column).
    """
    dataset = plan.dataset
    answers = [r.answer for r in rows]
    judged, undefined, human, warnings = {}, {}, {}, []
    for j in plan.judges:
        graded = [r.judgements[j.key] for r in rows]
        judged[j.key], why = aggregates(j, graded, plan.repeats)
        undefined.update({f"{j.key}/{name}": text for name, text in why.items()})
        scores = [g.combined.value for g in graded]
        labels = [r.sample.labels.get(j.name) for r in rows]
        if (vs_people := human_agreement(scores, labels, j.low, j.high)) is not None:
            human[j.key] = vs_people
            judged[j.key].update(vs_people.metrics)
            undefined.update({f"{j.key}/{k}": text for k, text in vs_people.undefined.items()})
        if (warning := _same_everywhere(j.key, scores)) is not None:
            warnings.append(warning)
    metrics, notes = offline_metrics(answers, dataset.has_targets)
    metrics += [
        judge_metric(j, [r.judgements[j.key] for r in rows], judged[j.key]) for j in plan.judges
    ]
    frame = eval_frame(dataset, plan.judges)
    if model_uri is None:
        frame = frame.join(answer_frame(answers))
    # Loaded here rather than by mlflow.evaluate, to skip its check of the model's pip
    # requirements against the installed packages (0.9 s scanning every distribution): the model
    # was logged a moment ago, from this interpreter.
    model = (
        None if model_uri is None else mlflow.pyfunc.load_model(model_uri, suppress_warnings=True)
    )
    result = _evaluate(
        model,
        frame,
        targets=GROUND_TRUTH if dataset.has_targets else None,
        predictions=ANSWER,
        model_type=None,
        evaluators="default",
        extra_metrics=metrics,
    )
    rows = _with_heuristics(rows, result.tables["eval_results_table"], plan.judges)
    extra = {**_run_metrics(rows), **(timings or {})}
    for judge in plan.judges:
        extra.update(by_turn(judge.key, rows))
    mlflow.log_metrics(extra)
    for judge in plan.judges:
        records = verdict_records([r.judgements[judge.key] for r in rows])
        mlflow.log_dict(records, f"judge_verdicts/{judge.name}.json")
    infos = tuple(j.info for j in plan.judges)
    outcome = ModelResult(spec, run_id, {**result.metrics, **extra}, rows, infos)
    outcome.human, outcome.undefined, outcome.warnings = human, undefined, warnings
    return outcome, notes


# What a store says when two runs log the same new dataset at once (PostgreSQL, SQLite, MySQL).
_DATASET_RACE = ("dataset_pk", "UNIQUE constraint failed: datasets", "Duplicate entry")


def _evaluate(*args: Any, **kwargs: Any) -> Any:
    """mlflow.evaluate, again when it lost the race to log a new dataset: it checks then inserts,
    so runs started together on one data file collide (one in three, three at once on a shared
    server). The dataset is its first write: nothing else of the try was logged."""
    for attempt in range(3):
        try:
            return mlflow.evaluate(*args, **kwargs)
        except MlflowException as exc:
            if attempt == 2 or not any(m in str(exc) for m in _DATASET_RACE):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


SAME_SCORE_ROWS = 10  # a judge that gives every one of this many rows one score says nothing


def _same_everywhere(key: str, scores: Sequence[float | None]) -> str | None:
    scored = [s for s in scores if s is not None]
    if len(scored) < SAME_SCORE_ROWS or len(set(scored)) > 1:
        return None
    return (
        f"{key} gave every one of the {len(scored)} scored rows the same score "
        f"({scored[0]:g}): it may not be telling answers apart. Check the judge on a "
        "known-answer set: --data data/judge_check.csv --answer-col answer (README, 'Can I "
        "trust my judge?')."
    )


def _with_heuristics(
    rows: list[RowResult], table: Any, judges: Sequence[JudgeDef]
) -> list[RowResult]:
    """Each row with MLflow's per-row heuristic scores (exact_match/v1, ...) read from its table."""
    ours = {f"{j.key}/score" for j in judges}
    columns = [c for c in table.columns if c.endswith("/score") and c not in ours]
    out = []
    for row, record in zip(rows, table[columns].to_dict("records")):
        values = {c.removesuffix("/score"): _number(v) for c, v in record.items()}
        out.append(replace(row, metrics=values))
    return out


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number


def _run_metrics(rows: Sequence[RowResult]) -> dict[str, float]:
    """Failed rows and the candidate's generation speed, for the report and the gate."""
    calls = [r.answer.call for r in rows if not r.answer.failed and r.answer.call is not None]
    out = {
        "candidate/failed_rows": float(sum(r.answer.failed for r in rows)),
        # A row fails without an answer to grade; a judge's failed call leaves it unscored
        # (counted per judge, `<judge>/failed_rows`).
        "failed_rows": float(sum(r.failed for r in rows)),
    }
    # The server's generation speed over the rows it answered now: a cached reply's timing is
    # that of the run that first asked, which may have been another server or another day.
    fresh = [c for c in calls if not c.cached]
    out["candidate/cached_answers"] = float(len(calls) - len(fresh))
    latency = sum(c.latency_s for c in fresh)
    if latency > 0:
        out["candidate/tokens_per_s"] = sum(c.completion_tokens or 0 for c in fresh) / latency
    return out
