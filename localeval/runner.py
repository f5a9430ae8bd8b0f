"""The run, in named steps: prepare (judges, data, servers, store), evaluate each model (answers,
verdicts, its MLflow run), compare the models, check the gate.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

import mlflow

from . import stats
from .calls.transport import Transport, activate
from .candidate.model import log_candidate
from .candidate.settings import answer_all, candidate_settings
from .config.settings import EvalConfig
from .judging import pairwise
from .judging.gate import check_gate
from .judging.grading import Grader
from .judging.judges import JudgeDef
from .judging.pairwise import PairwiseJudge
from .launch import Launch
from .prepare import Prepared, prepare
from .redact import mask
from .tracking import mlflow_run as tracking
from .tracking.baseline import compare_with
from .tracking.baseline import metrics as baseline_metrics
from .tracking.traces import TraceSettings, TraceWriter
from .types import (
    Answer,
    Comparison,
    Judgement,
    ModelResult,
    ModelSpec,
    Outcome,
    RowResult,
    Sample,
    Verdict,
)


def evaluate_model(
    p: Prepared,
    spec: ModelSpec,
    graders: Sequence[Grader],
    transport: Transport,
    model: Any,
    gate_failures: list[str] | None = None,
) -> tuple[ModelResult, list[str]]:
    """One model: its MLflow run, every row's answer, every judge's verdicts, the evaluation.

    Args:
        model: the candidate's logged model (MLflow's ModelInfo); None for answers from the data.
        gate_failures: where a --fail-if-worse failure head to head is added.
    """
    settings = candidate_settings(p.candidate, spec)
    samples = p.dataset.samples
    params = {
        **p.tracking.params,
        **p.params,
        "model": spec.id,
        "base_url": mask(spec.base_url),
        "system_prompt": settings.system_prompt,  # a model's own (an embedded variant's)
        "temperature": str(settings.temperature),
        "dataset_name": p.dataset.name,
        "dataset_digest": p.dataset.digest,
        "dataset_rows": str(len(samples)),
    }
    plan = tracking.RunPlan(p.dataset, p.judges, params, p.grading.repeats)
    model_id = None if p.from_data else model.model_id
    by_key = {g.judge.key: g for g in graders}

    def prompt(row: RowResult, key: str, verdict: Verdict) -> str:
        return by_key[key].prompt(row.sample, row.answer.text or "", verdict.json)

    with tracking.model_run(spec, params, model_id, p.tracking.tags) as run_id:
        trace_settings = TraceSettings(
            run_id=run_id,
            experiment_id=p.experiment_id,
            model=spec.id,
            base_url=mask(spec.base_url),
            system_prompt=settings.system_prompt,
            candidate_params={
                "temperature": settings.temperature,
                "max_tokens": settings.max_tokens,
            },
            upstreams=p.grading.upstreams,
            prompt_layout=p.grading.layout,
            dataset_digest=p.dataset.digest,
            judge_prompts=prompt,
            judge_versions={g.judge.key: g.version for g in graders},
        )
        writer = TraceWriter(p.tracking_uri, trace_settings, enabled=p.tracking.traces)
        try:
            started = time.perf_counter()
            if p.from_data:
                answers = [Answer(s.answer) for s in samples]
            else:
                client = transport.client(settings.endpoint())
                answers = answer_all(
                    settings,
                    [s.input for s in samples],
                    client,
                    p.candidate.concurrency,
                    p.candidate.quiet,
                )
            timings = {"time/answers_s": time.perf_counter() - started}
            rows = _grade(samples, answers, graders, writer.put, timings)
            uri = None if p.from_data else model.model_uri
            result, notes = tracking.finish_model_run(plan, spec, run_id, rows, uri, timings)
            if p.baseline is not None:
                result.vs_baseline = compare_with(p.baseline, result)
                mlflow.log_metrics(baseline_metrics(result.vs_baseline))
                if p.judging.pairwise:
                    lines, failed = _against_baseline(p, result, transport)
                    notes = [*notes, *lines]
                    if failed and gate_failures is not None:
                        gate_failures.append(failed)
        finally:
            failed = writer.close()
        if failed is not None:
            notes = [*notes, f"traces of {spec.id} not written: {failed}"]
    return result, notes


def _grade(
    samples: Sequence[Sample],
    answers: Sequence[Answer],
    graders: Sequence[Grader],
    on_row: Callable[[RowResult], None],
    timings: dict[str, float],
) -> list[RowResult]:
    """Every judge's verdicts, one judge after the other (consecutive prompts of one judge share
    their longest prefix: local servers reuse it); `on_row` gets each row once it is complete,
    `timings` each judge's wall time (`time/judge/<name>_s`)."""
    graded: dict[str, list[Judgement]] = {}

    def row(i: int, last: Judgement | None = None) -> RowResult:
        judged = {key: js[i] for key, js in graded.items()}
        if last is not None:
            judged[graders[-1].judge.key] = last
        return RowResult(i, samples[i], answers[i], judged)

    for grader in graders:
        done = (lambda i, j: on_row(row(i, j))) if grader is graders[-1] else None
        started = time.perf_counter()
        graded[grader.judge.key] = grader.grade_all(samples, answers, done)
        timings[f"time/judge/{grader.judge.name}_s"] = time.perf_counter() - started
    rows = [row(i) for i in range(len(samples))]
    if not graders:
        for r in rows:
            on_row(r)
    return rows


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


def _pairwise_judge(p: Prepared, transport: Transport) -> PairwiseJudge:
    return PairwiseJudge(
        p.judging.judge_endpoint,
        p.grading,
        transport,
        p.judging.temperature,
        p.judging.max_tokens,
    )


def _against_baseline(
    p: Prepared, result: ModelResult, transport: Transport
) -> tuple[list[str], str | None]:
    """This run's answers against the baseline run's, head to head in both orders; the figures
    on this run (`pairwise/baseline_vs_<model>/...`); --fail-if-worse fails when the win rate's
    interval lies below one half."""
    base = p.baseline
    assert base is not None
    if len(base.answers) != len(result.rows):
        return [f"--pairwise: {base.label} holds no answers to compare with"], None
    theirs = [Answer(a, None if a is not None else "failed in the baseline") for a in base.answers]
    rows = _pairwise_judge(p, transport).judge_all(
        p.dataset.samples, theirs, [r.answer for r in result.rows], "head to head vs baseline"
    )
    mlflow.log_params({k: v for k, v in p.params.items() if k.startswith("pairwise/")})
    figures = pairwise.figures(base.label, result.model.id, rows)
    mlflow.log_metrics(pairwise.pair_metrics(figures, a="baseline"))
    failed = None
    if p.tracking.fail_if_worse and figures.ci_high < 0.5:
        failed = (
            f"{result.model.id} loses head to head against {base.label}: win rate "
            f"{figures.win_rate:.0%} [{figures.ci_low:.0%}, {figures.ci_high:.0%}], below one half"
        )
    return [pairwise.headline(figures)], failed


def _head_to_head(p: Prepared, results: Sequence[ModelResult], transport: Transport) -> list[str]:
    """Every pair of models judged head to head on each row, in both orders; the figures logged
    on the comparison's parent run; one line per pair (and the strengths for three or more)."""
    judge = _pairwise_judge(p, transport)
    mlflow.log_params({k: v for k, v in p.params.items() if k.startswith("pairwise/")})
    samples = p.dataset.samples
    lines, comparisons = [], [[] for _ in samples]
    for i, j in itertools.combinations(range(len(results)), 2):
        a, b = results[i], results[j]
        rows = judge.judge_all(
            samples,
            [r.answer for r in a.rows],
            [r.answer for r in b.rows],
            f"head to head {b.model.id} vs {a.model.id}",
        )
        figures = pairwise.figures(a.model.id, b.model.id, rows)
        mlflow.log_metrics(pairwise.pair_metrics(figures))
        lines.append(pairwise.headline(figures))
        for k, row in enumerate(rows):
            if row.outcome is not None:
                won = {"b": 1.0, "tie": 0.5, "a": 0.0}[row.outcome]
                comparisons[k].append((i, j, won))
    if len(results) >= 3:
        names = [r.model.id for r in results]
        strengths = stats.bradley_terry(names, comparisons, seed=stats.SEED)
        for name, (score, low, high) in strengths.items():
            key = f"pairwise/{pairwise.metric_name(name)}/bt_score"
            mlflow.log_metrics({key: score, f"{key}_ci_low": low, f"{key}_ci_high": high})
        ranking = sorted(strengths, key=lambda n: -strengths[n][0])
        shown = ", ".join(
            f"{n} {strengths[n][0]:.0f} [{strengths[n][1]:.0f}, {strengths[n][2]:.0f}]"
            for n in ranking
        )
        apart = stats.separability(strengths)
        lines.append(
            f"head to head, Bradley-Terry strengths (95% intervals, 200 row resamples): {shown}; "
            f"{apart:.0%} of the pairs are separable"
        )
    return lines


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


def run(
    config: EvalConfig, launch: Launch | None = None, services: ExitStack | None = None
) -> Outcome:
    """Bring up what is missing, check it, evaluate every model, and stop what we started.

    Args:
        launch: what `launch.early` planned and started before the heavy imports.
        services: where `launch` registered the stopping of what it started (closed by the
            caller); what this run starts is stopped when it returns.
    """
    with ExitStack() as own:
        services = services or own
        p = prepare(config, own, launch)
        transport = Transport(p.calls)
        services.callback(transport.close)
        services.enter_context(activate(transport))
        graders = [Grader(j, p.grading, transport) for j in p.judges]
        outcome = Outcome(p.dataset, p.tracking_uri, p.experiment_id, [], notes=list(p.notes))
        # Logged before any run is open: a model logged inside a run is that run's output, and
        # MLflow's UI then lists the run under "Training runs", not "Evaluation runs".
        models = [
            None
            if p.from_data
            else log_candidate(
                candidate_settings(p.candidate, spec), transport.runtime, p.experiment_id
            )
            for spec in p.models
        ]
        pairwise_failures: list[str] = []
        if len(p.models) == 1:
            result, notes = evaluate_model(
                p, p.models[0], graders, transport, models[0], pairwise_failures
            )
            outcome.notes += notes
            outcome.results.append(result)
        else:
            with mlflow.start_run(run_name=f"compare {len(p.models)} models") as parent:
                outcome.parent_run_id = parent.info.run_id
                mlflow.set_tags(tracking.user_tags(p.tracking.tags))
                mlflow.log_params(p.tracking.params)
                for spec, model in zip(p.models, models):
                    result, notes = evaluate_model(
                        p, spec, graders, transport, model, pairwise_failures
                    )
                    outcome.notes += [n for n in notes if n not in outcome.notes]
                    outcome.results.append(result)
                outcome.comparisons = compare(outcome.results, p.judges)
                if p.judging.pairwise:
                    outcome.notes += _head_to_head(p, outcome.results, transport)
                _log_comparison(outcome)
        outcome.gate_failures = check_gate(p.fail_under, outcome.results, p.tracking.fail_if_worse)
        outcome.gate_failures += pairwise_failures
        return outcome
