"""The run's first step: judges, data and servers checked, the store open, before any call.

Exit 2 here (a wrong column, a server that does not answer, a baseline that does not compare)
costs no LLM call. Servers that `launch` did not start yet are started only if a reply the run
needs is not in the cache.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .calls.cache import ReplyCache, cache_key
from .candidate.settings import candidate_settings
from .config.settings import EvalConfig
from .config.slices import CacheOptions, CandidateOptions, DataOptions, ServingOptions
from .dataset import Columns, load_dataset
from .errors import ConfigError
from .judging.gate import check_names
from .judging.grading import Grader, GradingOptions, prompt_version
from .judging.judges import JudgeDef, judge_roles, needed_columns, resolve_judges
from .launch import Launch
from .serving import gateway, preflight, stack
from .serving.gateway import Served
from .tracking import mlflow_run as tracking
from .tracking.baseline import LAYOUT_PARAM, RUN_PARAM, VERSION_PARAM, Baseline, find_baseline
from .tracking.store import default_tracking_uri
from .types import Dataset, ModelSpec

# The candidate's server of a run answered wholly from the cache (no server started).
FROM_CACHE = "embedded llama.cpp server (not started: every answer from the cache)"


def human_columns(given: Sequence[str], judges: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """--human-col values as (judge name, column): `JUDGE=COL`, or `COL` with a single judge."""
    out = []
    for item in given:
        judge, sep, column = item.rpartition("=")
        if not sep:
            if len(judges) != 1:
                raise ConfigError(
                    f"--human-col {item}: with several judges ({', '.join(judges)}) say whose "
                    f"grades the column holds: --human-col {judges[0]}={item}."
                )
            judge = judges[0]
        if judge not in judges:
            raise ConfigError(
                f"--human-col {item}: no judge {judge!r} in this run ({', '.join(judges)})."
            )
        out.append((judge, column))
    return tuple(out)


def load_data(data: DataOptions, judges: list[JudgeDef]) -> Dataset:
    """Read the dataset, requiring the columns the chosen judges grade against."""
    needed = needed_columns(judges)
    need_target, need_context, extra = judge_roles(needed)
    names = [j.name for j in judges]
    columns = Columns(
        data.input_col,
        data.target_col,
        data.context_col,
        answer=data.answer_col,
        labels=human_columns(data.human_col, names),
    )
    return load_dataset(
        data.path,
        columns,
        need_target=need_target,
        need_context=need_context,
        need_extra=extra,
        needed_by={c: ", ".join(names) for c, names in needed.items()},
        judges=tuple(names),
        shard=data.shard,
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
    baseline: Baseline | None = None
    notes: list[str] = field(default_factory=list)


def prepare(config: EvalConfig, services: ExitStack, launch: Launch) -> Prepared:
    """Judges, data and servers checked (exit 2 before any call if one is wrong); store open.

    Servers that `launch` did not start yet are started only if a reply the run needs is not
    in the cache.
    """
    # The pieces of the config the stages below take (each sees only its own fields).
    serving, data = ServingOptions.of(config), DataOptions.of(config)
    judges = resolve_judges(config)
    dataset = load_data(data, judges)
    check_names(config.fail_under, judges, config.judge_repeats, dataset)  # before any call
    endpoints = {e for d in judges for e in d.endpoints}
    from_data = config.answer_col is not None
    resolved = launch.resolved
    models = resolved.models
    if from_data:  # the answers in the data play the candidate: nothing to call
        models = (ModelSpec(f"answers:{config.answer_col}", f"data column {config.answer_col}"),)
    notes = []
    if resolved.embedded_judge:
        notes.append(
            f"the judge is the embedded {stack.EMBEDDED_MODEL_ID}, a stand-in: its scores show "
            "that the pipeline works, not how good the answers are. Point the 'chat' endpoint "
            f"of {config.gateway_config} at a real judge (README: 'Can I trust my judge?')."
        )
    judge_format = config.judge_format
    if judge_format == "auto":
        judge_format = "json" if resolved.embedded_judge else "text"
    # Ours: its models are in the config it will be started with; else the gateway says.
    served = resolved.served or _users_gateway(
        serving.gateway_config, resolved.gateway_url, endpoints
    )
    upstreams = {e: served.identity(e) if served else "?" for e in endpoints}
    # A verdict is cached under the model(s) behind the endpoint, not the gateway's port.
    gateway_id = "embedded-gateway" if resolved.embedded_judge else config.gateway_url
    server_ids = {
        e: f"{gateway_id}|{upstreams[e]}|{resolved.judge_server_id or ''}" for e in endpoints
    }
    params = {
        f"judge/{d.name}": "+".join(f"{e} ({upstreams[e]})" for e in d.endpoints) for d in judges
    }
    given = config.concurrency if "concurrency" in config.given else None
    concurrency = judge_concurrency(given, config.concurrency, judges, served or Served())
    params.update({f"concurrency/judge/{d.name}": str(concurrency[d.key]) for d in judges})
    params["judge_format_used"] = judge_format
    layout = config.judge_prompt_layout
    grammar = resolved.embedded_judge  # llama-cpp-python behind our gateway takes a grammar
    versions = {d.key: prompt_version(d, judge_format, layout, grammar) for d in judges}
    params[LAYOUT_PARAM] = layout
    params.update({VERSION_PARAM.format(name=d.name): versions[d.key] for d in judges})
    if config.fail_if_worse and config.baseline is None:
        raise ConfigError("--fail-if-worse compares with a baseline: add --baseline last.")
    grading = GradingOptions(
        resolved.gateway_url,
        judge_format,
        config.judge_repeats,
        server_ids,
        upstreams,
        config.concurrency,
        config.quiet,
        layout,
        grammar,
        concurrency,
    )
    for note in resolved.notes:
        print(f"note: {note}", flush=True)
    starting = launch.starting
    # Servers started at launch: an answer is missing, so a verdict is too.
    cached = starting is None and _every_reply_cached(
        CacheOptions.of(config),
        CandidateOptions.of(config),
        from_data,
        dataset,
        models,
        judges,
        grading,
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
    tracking_uri = config.tracking_uri or default_tracking_uri()
    experiment_id = tracking.open_experiment(tracking_uri, config.experiment)
    notes.extend(tracking.close_killed_runs(experiment_id))
    base = None
    if config.baseline is not None:  # before any call: a baseline that cannot compare is exit 2
        base = find_baseline(
            tracking_uri, experiment_id, config.baseline, dataset, layout, versions
        )
        params[RUN_PARAM] = base.run_id
    return Prepared(
        config, judges, dataset, models, grading, tracking_uri, experiment_id, params, base, notes
    )


def _users_gateway(gateway_config: Path, url: str, endpoints: set[str]) -> Served | None:
    """What the gateway we did not start serves; the URLs behind its endpoints from the gateway
    config (--gateway-config, or ours by default) where its endpoints and models match."""
    served = gateway.query(url, endpoints)
    if served is None:
        return None
    try:
        in_file = gateway.from_config(gateway.read_gateway_config(gateway_config))
    except ConfigError:
        return served
    return served.with_urls_from(in_file)


def judge_concurrency(
    given: int | None, default: int, judges: Sequence[JudgeDef], served: Served
) -> dict[str, int]:
    """Each judge's calls in flight: an explicit --concurrency; else the default for each
    server behind the judge's endpoints (each destination of a route counts)."""
    # The default (4) is sized for one local server: its slots never wait for the next prompt,
    # and a queued call does not wait out --timeout behind many others. Several servers behind
    # a judge get it each: a route sends each call to a destination picked at random, so a
    # server often sits idle with few calls in flight (128 verdicts of 0.05 s, two single-slot
    # servers behind a route: 4.7 s with 2 in flight, 3.7 s with 4, 3.4 s with 8; one: 6.5 s).
    # The candidate's answers come from one server per model (models run one after the other):
    # --concurrency as given or its default.
    if given is not None:
        return {d.key: given for d in judges}
    return {d.key: default * max(1, served.servers(d.endpoints)) for d in judges}


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
            for sample in dataset.samples:
                if from_data:
                    answer = sample.answer
                else:
                    reply = lookup(settings.endpoint(), settings.messages(sample.input))
                    answer = None if reply is None else reply.text
                if answer is None or not all(g.cached(sample, answer, lookup) for g in graders):
                    return False
    return True
