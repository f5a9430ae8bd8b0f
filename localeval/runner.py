"""The run, in named steps: prepare (judges, data, servers, store), evaluate each model (answers,
verdicts, its MLflow run), compare the models, check the gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import mlflow

from . import stack, stats, tracking
from .candidate import CandidateSettings, answer_all, log_candidate
from .client import Runtime
from .config import EvalConfig
from .dataset import Columns, load_dataset
from .grading import Grader, GradingOptions
from .judges import JudgeDef, judge_roles, needed_columns, resolve_judges
from .servers import gateway_upstreams
from .transport import Transport, activate
from .types import (
    Comparison,
    Dataset,
    ModelResult,
    ModelSpec,
    Outcome,
    RowResult,
    Threshold,
)


def load_data(config: EvalConfig, judges: list[JudgeDef]) -> Dataset:
    """Read the dataset, requiring the columns the chosen judges grade against."""
    needed = needed_columns(judges)
    need_target, need_context, extra = judge_roles(needed)
    return load_dataset(
        config.data,
        Columns(config.input_col, config.target_col, config.context_col),
        need_target=need_target,
        need_context=need_context,
        need_extra=extra,
        needed_by={c: ", ".join(names) for c, names in needed.items()},
    )


@dataclass(frozen=True)
class Prepared:
    """What the run settled before the first LLM call, for every model."""

    config: EvalConfig
    judges: list[JudgeDef]
    dataset: Dataset
    models: tuple[ModelSpec, ...]
    grading: GradingOptions
    tracking_uri: str
    experiment_id: str
    params: dict[str, str] = field(default_factory=dict)  # run-wide params beyond the config


def prepare(config: EvalConfig, services: ExitStack) -> Prepared:
    """Judges, data and servers checked (exit 2 before any call if one is wrong); store open."""
    judges = resolve_judges(config)
    dataset = load_data(config, judges)
    resolved = stack.bring_up(config, services)
    for line in resolved.started:
        print(line, flush=True)
    stack.preflight(config, resolved, {e: d.name for d in judges for e in d.endpoints})
    tracking_uri = config.tracking_uri or tracking.default_tracking_uri()
    experiment_id = tracking.open_experiment(tracking_uri, config.experiment)
    judge_format = config.judge_format
    if judge_format == "auto":
        judge_format = "json" if resolved.embedded_judge else "text"
    upstreams = gateway_upstreams(resolved.gateway_url)
    # A verdict is cached under the model behind the endpoint, not the gateway's port.
    gateway = "embedded-gateway" if resolved.embedded_judge else config.gateway_url
    endpoints = {e for d in judges for e in d.endpoints}
    server_ids = {
        e: f"{gateway}|{upstreams.get(e, '?')}|{resolved.judge_server_id or ''}" for e in endpoints
    }
    params = {
        f"judge/{d.name}": "+".join(f"{e} ({upstreams.get(e, '?')})" for e in d.endpoints)
        for d in judges
    }
    params["judge_format_used"] = judge_format
    grading = GradingOptions(
        resolved.gateway_url,
        judge_format,
        config.judge_repeats,
        server_ids,
        config.concurrency,
        config.quiet,
    )
    return Prepared(
        config, judges, dataset, resolved.models, grading, tracking_uri, experiment_id, params
    )


def evaluate_model(
    p: Prepared, spec: ModelSpec, graders: Sequence[Grader], transport: Transport
) -> tuple[ModelResult, list[str]]:
    """One model: every row's answer, every judge's verdicts, then its MLflow run."""
    config = p.config
    settings = CandidateSettings(
        spec.base_url,
        spec.id,
        config.system_prompt,
        config.temperature,
        config.max_tokens,
        server_id=spec.server_id,
    )
    samples = p.dataset.samples
    answers = answer_all(
        settings, [s.input for s in samples], transport, config.concurrency, config.quiet
    )
    graded = {g.judge.key: g.grade_all(samples, answers) for g in graders}
    rows = [
        RowResult(i, sample, answer, {key: js[i] for key, js in graded.items()})
        for i, (sample, answer) in enumerate(zip(samples, answers))
    ]
    run_params = {**config.loggable(), **p.params}
    plan = tracking.RunPlan(p.dataset, p.judges, run_params, config.judge_repeats)
    params = {
        "model": spec.id,
        "base_url": spec.base_url,
        "dataset_name": p.dataset.name,
        "dataset_digest": p.dataset.digest,
        "dataset_rows": str(len(samples)),
    }
    runtime = transport.runtime
    return tracking.log_model_run(
        plan, spec, rows, lambda: log_candidate(settings, runtime).model_uri, params
    )


def compare(results: Sequence[ModelResult], judges: Sequence[JudgeDef]) -> list[Comparison]:
    """Each model against the first, per judge, on the rows both got a score for."""
    out = []
    base = results[0]
    for other in results[1:]:
        for judge in judges:
            result = stats.paired_bootstrap(
                base.scores(judge.key),
                other.scores(judge.key),
                confidence=stats.CONFIDENCE,
                n_resamples=stats.RESAMPLES,
                seed=stats.SEED,
            )
            out.append(Comparison(base.model.id, other.model.id, judge.key, result))
    return out


def check_gate(thresholds: Sequence[Threshold], results: Sequence[ModelResult]) -> list[str]:
    """One line per --fail-under threshold that a model's metrics do not meet."""
    failures = []
    for threshold in thresholds:
        for result in results:
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


def _log_comparison(outcome: Outcome) -> None:
    """The model × metric table and the paired comparisons, on the parent run."""
    table = {r.model.id: {k: v for k, v in r.metrics.items() if v == v} for r in outcome.results}
    mlflow.log_dict(table, "comparison.json")
    for c in outcome.comparisons:
        prefix = f"compare/{c.b}_vs_{c.a}/{c.judge}"
        mlflow.log_metrics(
            {
                f"{prefix}/mean_diff": c.result.mean_diff,
                f"{prefix}/ci_low": c.result.ci_low,
                f"{prefix}/ci_high": c.result.ci_high,
                f"{prefix}/p_b_better": c.result.p_b_better,
            }
        )


def run(config: EvalConfig) -> Outcome:
    """Bring up what is missing, check it, evaluate every model, and stop what we started."""
    with ExitStack() as services:
        p = prepare(config, services)
        transport = Transport(Runtime.from_config(config))
        services.callback(transport.close)
        services.enter_context(activate(transport))
        graders = [Grader(j, p.grading, transport) for j in p.judges]
        outcome = Outcome(p.dataset, p.tracking_uri, p.experiment_id, [])
        if len(p.models) == 1:
            result, outcome.notes = evaluate_model(p, p.models[0], graders, transport)
            outcome.results.append(result)
        else:
            with mlflow.start_run(run_name=f"compare {len(p.models)} models") as parent:
                outcome.parent_run_id = parent.info.run_id
                mlflow.log_params(config.loggable())
                for spec in p.models:
                    result, outcome.notes = evaluate_model(p, spec, graders, transport)
                    outcome.results.append(result)
                outcome.comparisons = compare(outcome.results, p.judges)
                _log_comparison(outcome)
        outcome.gate_failures = check_gate(config.fail_under, outcome.results)
        return outcome
