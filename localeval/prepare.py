"""The run's first step: judges, data and servers checked, the store open, before any call.

Exit 2 here (a wrong column, a server that does not answer, a baseline that does not compare)
costs no LLM call. Servers that `launch` did not start yet are started only if a reply the run
needs is not in the cache. The config is cut here, at the edge, into the pieces each stage takes
(`config.slices`); what the runner needs later is handed on in `Prepared`, not the config.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any

from .calls.cache import ReplyCache, cache_key
from .calls.client import Runtime
from .candidate.conversation import cached_replies, with_replies
from .candidate.settings import candidate_settings
from .config.settings import EvalConfig
from .config.slices import (
    CacheOptions,
    CandidateOptions,
    DataOptions,
    JudgingOptions,
    ServingOptions,
    TrackingOptions,
)
from .dataset import PREFERENCE_COL, Columns, human_columns, load_dataset
from .errors import ConfigError
from .judging.gate import check_names
from .judging.grading import Grader, GradingOptions, prompt_version
from .judging.judges import (
    JudgeDef,
    judge_roles,
    needed_columns,
    pairwise_rubric,
    resolve_judges,
)
from .judging.pairs import PairwiseRubric, pair_prefix
from .launch import Launch, early
from .prompts import DIALOGUE_VERSION
from .serving import gateway, preflight, stack
from .serving.gateway import Served
from .tracking import mlflow_run as tracking
from .tracking.baseline import LAYOUT_PARAM, RUN_PARAM, VERSION_PARAM, Baseline, find_baseline
from .tracking.store import default_tracking_uri
from .types import Dataset, ModelSpec, Threshold

# The candidate's server of a run answered wholly from the cache (no server started).
FROM_CACHE = "embedded llama.cpp server (not started: every answer from the cache)"


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """What the run settled before the first LLM call, for every model."""

    judges: list[JudgeDef]
    dataset: Dataset
    models: tuple[ModelSpec, ...]
    from_data: bool  # the answers are a data column: no candidate is asked
    candidate: CandidateOptions
    grading: GradingOptions
    calls: Runtime
    tracking: TrackingOptions
    judging: JudgingOptions
    fail_under: tuple[Threshold, ...]
    tracking_uri: str
    experiment_id: str
    params: dict[str, str] = field(default_factory=dict)  # run-wide params beyond the config
    baseline: Baseline | None = None
    notes: list[str] = field(default_factory=list)
    # A person's pick per row ("a", "b", "tie" or None) between the two answer columns, the
    # pair of versions it is about (their ids).
    preferences: list[str | None] | None = None
    preference_pair: tuple[str, str] | None = None
    rubric: PairwiseRubric = field(default_factory=PairwiseRubric)


def prepare(config: EvalConfig, services: ExitStack, launch: Launch | None = None) -> Prepared:
    """Judges, data and servers checked (exit 2 before any call if one is wrong); store open.

    Args:
        launch: what `launch.early` planned and started before the heavy imports (planned here
            when None). Servers it did not start yet are started only if a reply the run needs
            is not in the cache.
    """
    # The pieces of the config the stages below take (each sees only its own fields).
    serving, data = ServingOptions.of(config), DataOptions.of(config)
    judging, candidate = JudgingOptions.of(config), CandidateOptions.of(config)
    track = TrackingOptions.of(config)
    launch = launch or early(config, services)
    judges = resolve_judges(judging)
    rubric = pairwise_rubric(judging.judges_file, judging.judges_yaml)
    needed = needed_columns(judges)
    endpoints = {e for d in judges for e in d.endpoints}
    from_data = bool(data.answer_col)
    resolved = launch.resolved
    models = resolved.models
    if from_data:  # the answers in the data play the candidate: nothing to call
        models = tuple(
            ModelSpec(f"answers:{c}", f"data column {c}", answer_col=c) for c in data.answer_col
        )
    notes = []
    if resolved.embedded_judge:
        notes.append(
            f"the judge is the embedded {stack.EMBEDDED_MODEL_ID}, a stand-in: its scores show "
            "that the pipeline works, not how good the answers are. Point the 'chat' endpoint "
            f"of {serving.gateway_config} at a real judge (docs/trusting-a-judge.md: 'Can I "
            "trust my judge?')."
        )
    judge_format = judging.judge_format
    if judge_format == "auto":
        judge_format = "json" if resolved.embedded_judge else "text"
    # Ours: its models are in the config it will be started with; else the gateway says.
    served = resolved.served or gateway.users_gateway(
        resolved.gateway_url, endpoints, serving.gateway_config
    )
    upstreams = {e: served.identity(e) if served else "?" for e in endpoints}
    concurrency = gateway.judge_concurrency(
        {d.key: d.endpoints for d in judges},
        judging.concurrency,
        judging.concurrency_given,
        served or Served(),
    )
    layout = judging.layout
    grammar = resolved.embedded_judge  # llama-cpp-python behind our gateway takes a grammar
    versions = {d.key: prompt_version(d, judge_format, layout, grammar) for d in judges}
    # A verdict is cached under the model(s) behind the endpoint, not the gateway's port.
    gateway_id = "embedded-gateway" if resolved.embedded_judge else serving.gateway_url
    grading = GradingOptions(
        gateway_url=resolved.gateway_url,
        judge_format=judge_format,
        repeats=judging.repeats,
        server_ids={
            e: f"{gateway_id}|{upstreams[e]}|{resolved.judge_server_id or ''}" for e in endpoints
        },
        upstreams=upstreams,
        concurrency=judging.concurrency,
        quiet=judging.quiet,
        layout=layout,
        grammar=grammar,
        judge_concurrency=concurrency,
        judge_turns=judging.judge_turns,
    )
    params = {
        f"judge/{d.name}": "+".join(f"{e} ({upstreams[e]})" for e in d.endpoints) for d in judges
    }
    params.update({f"concurrency/judge/{d.name}": str(concurrency[d.key]) for d in judges})
    params.update({f"combine/{d.name}": d.combine for d in judges})  # its verdicts on a row
    params["judge_format_used"] = judge_format
    params[LAYOUT_PARAM] = layout
    params.update({VERSION_PARAM.format(name=d.name): versions[d.key] for d in judges})
    if judging.pairwise and len(models) < 2 and track.baseline is None:
        raise ConfigError(
            "--pairwise compares versions head to head: name two or more models with --model "
            "(e.g. --model A,B), or compare with an earlier run: --baseline last."
        )
    if judging.pairwise:
        params["pairwise/prompt_version"] = rubric.key
        params["pairwise/endpoint"] = rubric.endpoint or judging.judge_endpoint
    if track.fail_if_worse and track.baseline is None:
        raise ConfigError("--fail-if-worse compares with a baseline: add --baseline last.")
    # The data last among the checks that need no call: it may be the slowest to read.
    names = [j.name for j in judges]
    need_target, need_context, extra = judge_roles(needed)
    dataset = load_dataset(
        data.path,
        Columns(
            data.input_col,
            data.target_col,
            data.context_col,
            answers=data.answer_col,
            preference=PREFERENCE_COL,
            labels=human_columns(data.human_col, names),
            turns=data.turns_col,
        ),
        need_target=need_target,
        every_target=judging.require_reference,
        need_context=need_context,
        need_extra=extra,
        needed_by={c: ", ".join(names) for c, names in needed.items()},
        judges=tuple(names),
        shard=data.shard,
    )
    if any(s.turn is not None for s in dataset.samples):  # how a turn's dialogue is shown
        params["judge_dialogue_version"] = DIALOGUE_VERSION
        if judging.pairwise:  # its judge would see each turn without the dialogue before it
            raise ConfigError(
                f"--pairwise compares answers to single questions; {data.path} holds "
                "conversations, whose turns are judged in context by the absolute judges only. "
                "Drop --pairwise, and compare the models' runs with --model A,B (paired per turn)."
            )
    pair_prefixes = _pair_prefixes(models, track.baseline) if judging.pairwise else []
    check_names(judging.fail_under, judges, judging.repeats, dataset, pair_prefixes)
    preferences = [s.preference for s in dataset.samples]
    if any(preferences) and not judging.pairwise:
        notes.append(
            f"column {PREFERENCE_COL!r} (a person's pick of the two answers) is read only with "
            "--pairwise: add it to measure the judge against it"
        )
    for note in resolved.notes:
        print(f"note: {note}", flush=True)
    starting = launch.starting
    # Servers started at launch: an answer is missing, so a verdict is too.
    cached = (
        starting is None
        and not judging.pairwise
        and _every_reply_cached(
            CacheOptions.of(config), candidate, from_data, dataset, models, judges, grading
        )
    )
    if resolved.to_start and starting is None:
        if cached:
            notes.append("every reply this run needs is in the cache: no server was started")
            # The embedded server's URL was only planned: say where the answers came from.
            models = tuple(
                replace(m, base_url=FROM_CACHE) if m.base_url == resolved.llm_url else m
                for m in models
            )
        else:
            starting = stack.start(resolved, serving, services)
    if starting is not None:
        starting.wait()
        for line in starting.lines:
            print(line, flush=True)
    if starting is not None or not resolved.to_start:
        live = served  # a gateway we did not start: asked already
        if resolved.served is not None:  # ours: is it serving what its config says?
            live = gateway.query(resolved.gateway_url, endpoints)
            # The URLs behind the endpoints are only in the config.
            live = live and live.with_urls_from(resolved.served)
        asks = {e: d.name for d in judges for e in d.endpoints}
        preflight.check(serving, resolved, asks, live, call_judges=not cached)
    tracking_uri = track.tracking_uri or default_tracking_uri()
    experiment_id = tracking.open_experiment(tracking_uri, track.experiment)
    notes.extend(tracking.close_killed_runs(experiment_id))
    base = None
    if track.baseline is not None:  # before any call: a baseline that cannot compare is exit 2
        base = find_baseline(tracking_uri, experiment_id, track.baseline, dataset, layout, versions)
        params[RUN_PARAM] = base.run_id
    return Prepared(
        judges=judges,
        dataset=dataset,
        models=models,
        from_data=from_data,
        candidate=candidate,
        grading=grading,
        calls=Runtime.from_config(config),
        tracking=track,
        judging=judging,
        fail_under=judging.fail_under,
        tracking_uri=tracking_uri,
        experiment_id=experiment_id,
        params=params,
        baseline=base,
        notes=notes,
        preferences=preferences if any(preferences) else None,
        rubric=rubric,
        preference_pair=(models[0].id, models[1].id) if len(models) == 2 else None,
    )


def _pair_prefixes(models: Sequence[ModelSpec], baseline: str | None) -> list[str]:
    """`pairwise/<A>_vs_<B>` of every pair --pairwise will judge."""
    if baseline is not None:
        return [pair_prefix("baseline", m.id) for m in models]
    return [pair_prefix(a.id, b.id) for a, b in itertools.combinations(models, 2)]


def _every_reply_cached(
    cache_options: CacheOptions,
    candidate: CandidateOptions,
    from_data: bool,
    dataset: Dataset,
    models: Sequence[ModelSpec],
    judges: Sequence[JudgeDef],
    grading: GradingOptions,
) -> bool:
    """Whether the reply cache holds every answer and verdict the run would ask for."""
    if not cache_options.read:
        return False
    folder = cache_options.folder.resolve()
    if not (folder / "replies.sqlite").exists():
        return False
    cache = ReplyCache(folder)

    def lookup(endpoint: Any, messages: list[dict[str, str]]) -> Any:
        return cache.get(cache_key(endpoint, messages))

    with contextlib.closing(cache):
        graders = [Grader(j, grading, None) for j in judges]  # type: ignore[arg-type]
        for spec in models:
            settings = candidate_settings(candidate, spec)
            samples = list(dataset.samples)
            if from_data:
                answers = [s.answers.get(spec.answer_col or "") for s in samples]
            else:
                endpoint = settings.endpoint()
                found = cached_replies(
                    samples, settings.system_prompt, lambda m, e=endpoint: lookup(e, m)
                )
                if found is None:
                    return False
                answers, samples = found, with_replies(samples, found)
            for sample, answer in zip(samples, answers):
                if answer is None or not all(g.cached(sample, answer, lookup) for g in graders):
                    return False
    return True
