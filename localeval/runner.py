"""The run: data → candidate answers → judge verdicts → MLflow run(s) → what to print.

This is the one module that calls `mlflow.evaluate` and the `mlflow.metrics.genai` prompts'
machinery, both deprecated since MLflow 3.0/3.4 but working in the pinned 3.17.
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import stack as stack_mod
from .candidate import ANSWER, CandidateSettings, Runtime
from .config import EvalConfig, ModelSpec
from .dataset import Columns, Dataset, load_dataset


@dataclass
class ModelResult:
    """One candidate model's evaluation: its MLflow run, aggregates and per-row table."""

    model: ModelSpec
    run_id: str
    metrics: dict[str, float]
    table: Any  # pandas DataFrame: MLflow's eval_results_table
    failed_rows: int


@dataclass
class Outcome:
    """Everything the entry script prints and maps to an exit code."""

    config: EvalConfig
    dataset: Dataset
    tracking_uri: str
    experiment_id: str
    results: list[ModelResult]
    parent_run_id: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failed_rows(self) -> int:
        return sum(r.failed_rows for r in self.results)


def default_tracking_uri() -> str:
    return "sqlite:///" + str(Path.cwd() / "mlflow.db")


def _quiet_mlflow() -> None:
    # Deprecation notices for mlflow.evaluate / genai metrics are expected with the pinned version.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*Pydantic.*")
    # We log a signature on purpose: an input example would make an LLM call at log time.
    warnings.filterwarnings("ignore", message=".*input example was not provided.*")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    for name in ("alembic", "httpx", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)


def load_data(config: EvalConfig) -> Dataset:
    """Read the dataset, requiring the columns the chosen judges grade against."""
    from .judges import needs

    needed = set().union(*(needs(j.name) for j in config.judges)) if config.judges else set()
    columns = Columns(config.input_col, config.target_col, config.context_col)
    return load_dataset(
        config.data, columns, need_target="targets" in needed, need_context="context" in needed
    )


def _frame(dataset: Dataset) -> Any:
    import pandas as pd

    frame = pd.DataFrame({"inputs": [s.input for s in dataset.samples]})
    if dataset.has_targets:
        frame["ground_truth"] = [s.target or "" for s in dataset.samples]
    if dataset.has_context:
        frame["context"] = [s.context or "" for s in dataset.samples]
    return frame


def _runtime(config: EvalConfig) -> Runtime:
    return Runtime(
        concurrency=config.concurrency,
        timeout_s=config.timeout,
        max_retries=config.max_retries,
        cache_dir=None if config.no_cache else str(config.cache_dir.resolve()),
        refresh=config.refresh,
        quiet=config.quiet,
    )


def _evaluate_model(
    config: EvalConfig, spec: ModelSpec, dataset: Dataset, frame: Any, metrics: list[Any]
) -> ModelResult:
    import mlflow

    from .candidate import log_candidate

    runtime = _runtime(config)
    settings = CandidateSettings(
        spec.base_url, spec.id, config.system_prompt, config.temperature, config.max_tokens
    )
    with mlflow.start_run(run_name=spec.id, nested=mlflow.active_run() is not None) as run:
        mlflow.log_params(
            {
                **config.loggable(),
                "model": spec.id,
                "base_url": spec.base_url,
                "dataset_name": dataset.name,
                "dataset_digest": dataset.digest,
                "dataset_rows": len(dataset.samples),
            }
        )
        info = log_candidate(settings, runtime)
        result = mlflow.evaluate(
            info.model_uri,
            frame,
            targets="ground_truth" if dataset.has_targets else None,
            predictions=ANSWER,
            model_type=None,
            evaluators="default",
            extra_metrics=metrics,
        )
        table = result.tables["eval_results_table"]
        failed = int((table["candidate_error"].fillna("") != "").sum())
        mlflow.log_metric("candidate/failed_rows", failed)
        return ModelResult(spec, run.info.run_id, dict(result.metrics), table, failed)


def run(config: EvalConfig) -> Outcome:
    """Bring up what is missing, check it, evaluate every model, and stop what we started."""
    os.environ.update(stack_mod.telemetry_off(dict(os.environ)))
    _quiet_mlflow()
    dataset = load_data(config)
    with ExitStack() as services:
        resolved = stack_mod.bring_up(config, services)
        for line in resolved.started:
            print(line, flush=True)
        stack_mod.preflight(config, resolved)
        config = stack_mod.resolve_models(resolved, config)

        import mlflow

        from .judges import JudgeParams, build_judge
        from .metrics import offline_metrics

        tracking_uri = config.tracking_uri or default_tracking_uri()
        mlflow.set_tracking_uri(tracking_uri)
        experiment = mlflow.set_experiment(config.experiment)
        params = JudgeParams(config.gateway_url, config.judge_temperature, config.judge_max_tokens)
        judges = [build_judge(j, params, _runtime(config)) for j in config.judges]
        metrics, notes = offline_metrics(dataset.has_targets)
        frame = _frame(dataset)
        outcome = Outcome(config, dataset, tracking_uri, experiment.experiment_id, [], notes=notes)
        if len(config.models) == 1:
            outcome.results.append(
                _evaluate_model(config, config.models[0], dataset, frame, metrics + judges)
            )
        else:
            with mlflow.start_run(run_name=f"compare {len(config.models)} models") as parent:
                outcome.parent_run_id = parent.info.run_id
                for spec in config.models:
                    outcome.results.append(
                        _evaluate_model(config, spec, dataset, frame, metrics + judges)
                    )
        return outcome
