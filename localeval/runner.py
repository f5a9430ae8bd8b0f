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
from typing import TYPE_CHECKING, Any

from . import defaults
from . import stack as stack_mod
from .candidate import ANSWER, CandidateSettings, answer_failed
from .client import Runtime
from .config import EvalConfig, ModelSpec
from .dataset import Columns, Dataset, load_dataset
from .errors import ConfigError

if TYPE_CHECKING:
    from .judges import Judge, JudgeDef
    from .stats import PairedComparison


@dataclass
class ModelResult:
    """One candidate model's evaluation: its MLflow run, aggregates and per-row table."""

    model: ModelSpec
    run_id: str
    metrics: dict[str, float]
    table: Any  # pandas DataFrame: MLflow's eval_results_table
    failed_rows: int


@dataclass(frozen=True)
class Comparison:
    """Model b against model a on one judge's per-row scores (paired bootstrap)."""

    a: str
    b: str
    metric: str
    result: PairedComparison


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
    comparisons: list[Comparison] = field(default_factory=list)
    gate_failures: list[str] = field(default_factory=list)

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
    # MLflow draws a "Downloading artifacts" bar each time evaluate loads the logged model.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("alembic", "httpx", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)


def resolve_judges(config: EvalConfig) -> list[JudgeDef]:
    """The built-in judges named by --judge and the custom ones from --judges-file."""
    from .judges import builtin_judge, load_custom_judges

    temperature, max_tokens = config.judge_temperature, config.judge_max_tokens
    defs = [
        builtin_judge(
            spec,
            temperature if spec.temperature is None else spec.temperature,
            max_tokens if spec.max_tokens is None else spec.max_tokens,
        )
        for spec in config.judges
    ]
    if config.judges_file is not None:
        defs += load_custom_judges(
            config.judges_file, config.judge_endpoint, temperature, max_tokens
        )
    names = [d.name for d in defs]
    if len(set(names)) != len(names):
        raise ConfigError(f"A judge is named twice: {names}. Each metric needs its own name.")
    return defs


def load_data(config: EvalConfig, judges: list[JudgeDef]) -> Dataset:
    """Read the dataset, requiring the columns the chosen judges grade against."""
    from .judges import CONTEXT, TARGETS

    needed_by: dict[str, list[str]] = {}
    for judge in judges:
        for column in judge.grading_context_columns:
            needed_by.setdefault(column, []).append(judge.name)
    columns = Columns(config.input_col, config.target_col, config.context_col)
    return load_dataset(
        config.data,
        columns,
        need_target=TARGETS in needed_by,
        need_context=CONTEXT in needed_by,
        need_extra=tuple(c for c in needed_by if c not in (TARGETS, CONTEXT)),
        needed_by={c: ", ".join(names) for c, names in needed_by.items()},
    )


def _frame(dataset: Dataset, judges: list[JudgeDef]) -> Any:
    import pandas as pd

    from .judges import CONTEXT, TARGETS

    frame = pd.DataFrame({"inputs": [s.input for s in dataset.samples]})
    if dataset.has_targets:
        frame["ground_truth"] = [s.target or "" for s in dataset.samples]
    if dataset.has_context:
        frame["context"] = [s.context or "" for s in dataset.samples]
    for column in sorted({c for j in judges for c in j.grading_context_columns}):
        if column not in (TARGETS, CONTEXT):  # a custom judge's own grading column
            frame[column] = [str(s.metadata.get(column, "")) for s in dataset.samples]
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
    config: EvalConfig,
    spec: ModelSpec,
    dataset: Dataset,
    frame: Any,
    metrics: list[Any],
    judges: list[Judge],
    extra_params: dict[str, str],
) -> ModelResult:
    import mlflow

    from .candidate import log_candidate
    from .html_report import render_html

    runtime = _runtime(config)
    settings = CandidateSettings(
        spec.base_url,
        spec.id,
        config.system_prompt,
        config.temperature,
        config.max_tokens,
        server_id=spec.server_id,
    )
    with mlflow.start_run(run_name=spec.id, nested=mlflow.active_run() is not None) as run:
        mlflow.log_params(
            {
                **config.loggable(),
                **extra_params,
                "model": spec.id,
                "base_url": spec.base_url,
                "dataset_name": dataset.name,
                "dataset_digest": dataset.digest,
                "dataset_rows": len(dataset.samples),
            }
        )
        info = log_candidate(settings, runtime)
        try:
            result = mlflow.evaluate(
                info.model_uri,
                frame,
                targets="ground_truth" if dataset.has_targets else None,
                predictions=ANSWER,
                model_type=None,
                evaluators="default",
                extra_metrics=metrics + [j.metric() for j in judges],
            )
        except Exception:
            # MLflow wraps a metric's exception in its own; surface ours (auth, bad endpoint).
            fatal = next((j.fatal for j in judges if j.fatal is not None), None)
            if fatal is not None:
                raise fatal from None
            raise
        table = result.tables["eval_results_table"]
        candidate_failed = {i for i, e in enumerate(table["candidate_error"]) if answer_failed(e)}
        judge_failed = set().union(*(j.failed_rows() for j in judges))
        failed = len(candidate_failed | judge_failed)  # a row fails if any of its calls did
        extra = {
            "candidate/failed_rows": float(len(candidate_failed)),
            "failed_rows": float(failed),
        }
        latency = float(table["latency_s"].fillna(0).sum())
        if latency > 0:  # the server's generation speed over the rows it answered
            tokens = float(table["completion_tokens"].fillna(0).sum())
            extra["candidate/tokens_per_s"] = tokens / latency
        mlflow.log_metrics(extra)
        for judge in judges:
            mlflow.log_dict(judge.verdicts(), f"judge_verdicts/{judge.definition.name}.json")
        metrics_out = {**result.metrics, **extra}
        model_result = ModelResult(spec, run.info.run_id, metrics_out, table, failed)
        mlflow.log_text(render_html([model_result], dataset=dataset.name), "report.html")
        return model_result


def _comparisons(results: list[ModelResult], judges: list[JudgeDef]) -> list[Comparison]:
    """Each model against the first, per judge, on the rows both got a score for."""
    from .stats import paired_bootstrap

    out = []
    base = results[0]
    for other in results[1:]:
        for judge in judges:
            column = f"{judge.name}/{judge.version}/score"
            if column not in base.table or column not in other.table:
                continue
            a = [None if v != v else v for v in base.table[column].tolist()]
            b = [None if v != v else v for v in other.table[column].tolist()]
            result = paired_bootstrap(
                a,
                b,
                confidence=defaults.CONFIDENCE,
                n_resamples=defaults.BOOTSTRAP_RESAMPLES,
                seed=defaults.BOOTSTRAP_SEED,
            )
            out.append(Comparison(base.model.id, other.model.id, column, result))
    return out


def check_gate(outcome: Outcome) -> list[str]:
    """One line per --fail-under threshold that a model's metrics do not meet."""
    failures = []
    for threshold in outcome.config.fail_under:
        for result in outcome.results:
            value = result.metrics.get(threshold.metric)
            if value is None or value != value:
                failures.append(
                    f"{result.model.id}: {threshold.metric} is missing (no row could be graded, "
                    f"or no such metric), required >= {threshold.value:g}"
                )
            elif value < threshold.value:
                failures.append(
                    f"{result.model.id}: {threshold.metric} = {value:.4g} < {threshold.value:g}"
                )
    return failures


def run(config: EvalConfig) -> Outcome:
    """Bring up what is missing, check it, evaluate every model, and stop what we started."""
    os.environ.update(stack_mod.telemetry_off(dict(os.environ)))
    _quiet_mlflow()
    judge_defs = resolve_judges(config)
    dataset = load_data(config, judge_defs)
    with ExitStack() as services:
        resolved = stack_mod.bring_up(config, services)
        for line in resolved.started:
            print(line, flush=True)
        stack_mod.preflight(config, resolved, {e: d.name for d in judge_defs for e in d.endpoints})
        config = stack_mod.resolve_models(resolved, config)

        import mlflow
        import mlflow.langchain
        import mlflow.openai

        # mlflow.evaluate turns on LangChain and OpenAI autolog tracing while it runs: a trace per
        # LLM call (every prompt stored again) written from a background queue. At 200 rows,
        # concurrency 8, 100 ms a call, that made the run 10.8 s instead of 5.7 s (bench/).
        mlflow.langchain.autolog(disable=True)
        mlflow.openai.autolog(disable=True)

        from .judges import Judge, JudgeOptions
        from .metrics import offline_metrics

        tracking_uri = config.tracking_uri or default_tracking_uri()
        mlflow.set_tracking_uri(tracking_uri)
        experiment = mlflow.set_experiment(config.experiment)
        judge_format = config.judge_format
        if judge_format == "auto":
            judge_format = "json" if resolved.embedded_judge else "text"
        upstreams = stack_mod.gateway_upstreams(config.gateway_url)
        # A verdict is cached under the model behind the endpoint, not the gateway's port.
        gateway = "embedded-gateway" if resolved.embedded_judge else config.gateway_url
        server_ids = {
            e: f"{gateway}|{upstreams.get(e, '?')}|{resolved.judge_server_id or ''}"
            for d in judge_defs
            for e in d.endpoints
        }
        options = JudgeOptions(config.gateway_url, judge_format, config.judge_repeats, server_ids)
        judges = [Judge(d, options, _runtime(config)) for d in judge_defs]
        extra_params = {
            f"judge/{d.name}": "+".join(f"{e} ({upstreams.get(e, '?')})" for e in d.endpoints)
            for d in judge_defs
        }
        extra_params["judge_format_used"] = judge_format
        metrics, notes = offline_metrics(dataset.has_targets)
        frame = _frame(dataset, judge_defs)
        outcome = Outcome(config, dataset, tracking_uri, experiment.experiment_id, [], notes=notes)
        if len(config.models) == 1:
            outcome.results.append(
                _evaluate_model(
                    config, config.models[0], dataset, frame, metrics, judges, extra_params
                )
            )
        else:
            with mlflow.start_run(run_name=f"compare {len(config.models)} models") as parent:
                outcome.parent_run_id = parent.info.run_id
                mlflow.log_params(config.loggable())
                for spec in config.models:
                    outcome.results.append(
                        _evaluate_model(config, spec, dataset, frame, metrics, judges, extra_params)
                    )
                _log_comparison(outcome, judge_defs)
        outcome.gate_failures = check_gate(outcome)
        return outcome


def _log_comparison(outcome: Outcome, judge_defs: list[JudgeDef]) -> None:
    """The model × metric table and the paired comparisons, on the parent run."""
    import mlflow

    from .html_report import render_outcome
    from .report import format_comparison

    outcome.comparisons = _comparisons(outcome.results, judge_defs)
    mlflow.log_text(format_comparison(outcome.results), "comparison.txt")
    table = {r.model.id: {k: v for k, v in r.metrics.items() if v == v} for r in outcome.results}
    mlflow.log_dict(table, "comparison.json")
    mlflow.log_text(render_outcome(outcome), "report.html")
    for c in outcome.comparisons:
        prefix = f"compare/{c.b}_vs_{c.a}/{c.metric.removesuffix('/score')}"
        mlflow.log_metrics(
            {
                f"{prefix}/mean_diff": c.result.mean_diff,
                f"{prefix}/ci_low": c.result.ci_low,
                f"{prefix}/ci_high": c.result.ci_high,
                f"{prefix}/p_b_better": c.result.p_b_better,
            }
        )
