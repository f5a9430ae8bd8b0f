"""The run, in named steps: prepare (judges, data, servers, store), evaluate each model (answers,
verdicts, its MLflow run), compare the models, check the gate.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

import mlflow

from . import stats
from .calls.transport import Transport, activate
from .candidate.conversation import with_replies
from .candidate.model import log_candidate
from .candidate.settings import answer_all, candidate_settings
from .config.settings import EvalConfig
from .judging import pairs
from .judging.gate import check_gate, check_pairs
from .judging.grading import Grader
from .judging.judges import JudgeDef
from .judging.pairs import HeadToHead
from .judging.pairwise import PairwiseJudge
from .launch import Launch
from .outcome import Outcome, Strength
from .prepare import Prepared, prepare
from .redact import mask
from .tracking import head_to_head
from .tracking import mlflow_run as tracking
from .tracking.baseline import compare_with
from .tracking.baseline import metrics as baseline_metrics
from .tracking.trace_writer import APART_FROM_ROWS, TraceWriter
from .tracking.traces import TraceSettings
from .types import (
    Answer,
    Comparison,
    Judgement,
    ModelResult,
    ModelSpec,
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
    pairs: list[HeadToHead] | None = None,
    run_name: str | None = None,
    warming: threading.Thread | None = None,
) -> tuple[ModelResult, list[str]]:
    """One model: its MLflow run, every row's answer, every judge's verdicts, the evaluation.

    Args:
        model: the candidate's logged model (MLflow's ModelInfo); None for answers from the data.
        pairs: where the head to head against the baseline is added (--pairwise --baseline).
        run_name: the run's name (None: the model id and the start of the run's id).
        warming: `tracking.warm_up`'s imports, joined before mlflow.evaluate.
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

    with tracking.model_run(spec, params, model_id, p.tracking.tags, run_name) as run_id:
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
            judge_versions={g.judge.key: g.version for g in graders},
        )
        writer = TraceWriter(
            p.tracking_uri, trace_settings, prompt, enabled=p.tracking.traces,
            separate_process=len(samples) >= APART_FROM_ROWS,
        )  # fmt: skip
        try:
            started = time.perf_counter()
            if p.from_data:
                answers = [Answer(s.answers.get(spec.answer_col or "")) for s in samples]
            else:
                client = transport.client(settings.endpoint())
                answers = answer_all(
                    settings, samples, client, p.candidate.concurrency, p.candidate.quiet
                )
            timings = {"time/answers_s": time.perf_counter() - started}
            # Each turn with the candidate's own earlier answers: the dialogue its judges read.
            samples = with_replies(samples, [a.text for a in answers])
            rows = _grade(samples, answers, graders, writer.put, timings)
            # A turn's answer depends on the dialogue before it, which the logged model's
            # `inputs` column does not hold: MLflow reads the answers as a column instead.
            turns = any(s.turn is not None for s in samples)
            uri = None if p.from_data or turns else model.model_uri
            if warming is not None:
                warming.join()
            result, notes = tracking.finish_model_run(plan, spec, run_id, rows, uri, timings)
            if p.baseline is not None:
                result.vs_baseline = compare_with(p.baseline, result)
                mlflow.log_metrics(baseline_metrics(result.vs_baseline))
        finally:
            failed = writer.close()
        result.traces = writer.trace_ids
        if failed is not None:
            notes = [*notes, f"traces of {spec.id} not written: {failed}"]
        if p.baseline is not None and p.judging.pairwise and pairs is not None:
            if len(p.baseline.answers) != len(result.rows):
                notes = [*notes, f"--pairwise: {p.baseline.label} holds no answers to compare with"]
            else:
                pairs.append(_against_baseline(p, result, transport))
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


def _judge_pair(
    p: Prepared,
    transport: Transport,
    a: tuple[str, Sequence[Answer]],
    b: tuple[str, Sequence[Answer]],
    traces: dict[int, str],
    a_metric: str | None = None,
) -> HeadToHead:
    """Every row of one pair of versions (label, answers) judged in both orders; its figures,
    table and per-row assessments (on `traces`, B's) logged on the active run."""
    judge = PairwiseJudge(
        p.judging.judge_endpoint,
        p.grading,
        transport,
        p.judging.temperature,
        p.judging.max_tokens,
        p.rubric,
    )
    samples = p.dataset.samples
    human = p.preferences if (a[0], b[0]) == p.preference_pair else None
    rows = judge.judge_all(samples, a[1], b[1], f"head to head {b[0]} vs {a[0]}", human)
    pair = HeadToHead(
        a=a[0],
        b=b[0],
        rows=rows,
        figures=pairs.figures(a[0], b[0], rows),
        a_metric=a_metric,
        version=judge.version,
        answers=[(x.text, y.text) for x, y in zip(a[1], b[1])],
    )
    head_to_head.log(pair, samples, (a[1], b[1]), traces, judge.name)
    return pair


def _against_baseline(p: Prepared, result: ModelResult, transport: Transport) -> HeadToHead:
    """This run's answers against the baseline run's, head to head in both orders; the figures
    on this run (`pairwise/baseline_vs_<model>/...`)."""
    base = p.baseline
    assert base is not None
    theirs = [Answer(a, None if a is not None else "failed in the baseline") for a in base.answers]
    mlflow.log_params({k: v for k, v in p.params.items() if k.startswith("pairwise/")})
    ours = [r.answer for r in result.rows]
    return _judge_pair(
        p, transport, (base.label, theirs), (result.model.id, ours), result.traces, "baseline"
    )


def _head_to_head(p: Prepared, outcome: Outcome, transport: Transport) -> None:
    """Every pair of models judged head to head on each row, in both orders, logged on the
    comparison's parent run; for three or more, their Bradley-Terry strengths."""
    results = outcome.results
    mlflow.log_params({k: v for k, v in p.params.items() if k.startswith("pairwise/")})
    comparisons: list[list[tuple[int, int, float]]] = [[] for _ in p.dataset.samples]
    for i, j in itertools.combinations(range(len(results)), 2):
        a, b = results[i], results[j]
        pair = _judge_pair(
            p,
            transport,
            (a.model.id, [r.answer for r in a.rows]),
            (b.model.id, [r.answer for r in b.rows]),
            b.traces,
        )
        outcome.head_to_head.append(pair)
        for k, row in enumerate(pair.rows):
            if (points := row.b_points) is not None:
                comparisons[k].append((i, j, points))
    if len(results) >= 3:
        names = [r.model.id for r in results]
        found = stats.bradley_terry(names, comparisons, seed=stats.SEED)
        for name, (score, low, high) in found.items():
            key = f"pairwise/{pairs.metric_name(name)}/bt_score"
            mlflow.log_metrics({key: score, f"{key}_ci_low": low, f"{key}_ci_high": high})
        ranked = sorted(found, key=lambda n: -found[n][0])
        outcome.strengths = [Strength(n, *found[n]) for n in ranked]
        outcome.separability = stats.separability(found)


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
        warming = tracking.warm_up()
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
        name = p.tracking.run_name  # None: named after the model(s) and the run's id
        if len(p.models) == 1:
            result, notes = evaluate_model(
                p, p.models[0], graders, transport, models[0], outcome.head_to_head, name, warming
            )
            outcome.notes += notes
            outcome.results.append(result)
        else:
            with mlflow.start_run(run_name=name or f"compare {len(p.models)} models") as parent:
                outcome.parent_run_id = parent.info.run_id
                if name is None:
                    tracking.name_apart(parent.info.run_id, f"compare {len(p.models)} models")
                mlflow.set_tags(tracking.user_tags(p.tracking.tags))
                mlflow.log_params(p.tracking.params)
                for spec, model in zip(p.models, models):
                    result, notes = evaluate_model(
                        p, spec, graders, transport, model, outcome.head_to_head, warming=warming
                    )
                    outcome.notes += [n for n in notes if n not in outcome.notes]
                    outcome.results.append(result)
                outcome.comparisons = compare(outcome.results, p.judges)
                if p.judging.pairwise:
                    _head_to_head(p, outcome, transport)
                _log_comparison(outcome)
        outcome.gate_failures = check_gate(p.fail_under, outcome.results, p.tracking.fail_if_worse)
        outcome.gate_failures += check_pairs(
            p.fail_under, outcome.head_to_head, p.tracking.fail_if_worse
        )
        return outcome
