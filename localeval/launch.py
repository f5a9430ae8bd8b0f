"""What to start, decided before the heavy imports: servers boot while MLflow is imported.

A run whose every answer is cached may not need the servers at all (the runner decides that
once the judges are known); a run missing an answer needs the candidate's server for sure, so it
is started at once.
"""

from __future__ import annotations

import contextlib
from contextlib import ExitStack
from dataclasses import dataclass

from .calls.cache import ReplyCache, cache_key
from .candidate.settings import candidate_settings
from .config.settings import EvalConfig
from .config.slices import CacheOptions, CandidateOptions, DataOptions, ServingOptions
from .dataset import Columns, load_dataset
from .serving import stack


@dataclass
class Launch:
    """The plan for the servers, and those already starting."""

    resolved: stack.Resolved
    starting: stack.Starting | None = None


def judge_endpoints(config: EvalConfig) -> set[str]:
    """The gateway endpoints the run's built-in judges ask (custom ones default to the same)."""
    return {e for j in config.judges for e in j.endpoints} | {config.judge_endpoint}


def answers_cached(
    cache_options: CacheOptions,
    data: DataOptions,
    candidate: CandidateOptions,
    resolved: stack.Resolved,
) -> bool:
    """Whether the reply cache holds every candidate answer the run needs."""
    if data.answer_col is not None:
        return True  # the answers are in the data
    folder = cache_options.folder.resolve()
    if not cache_options.read or not (folder / "replies.sqlite").exists():
        return False
    samples = load_dataset(
        data.path, Columns(data.input_col, data.target_col, data.context_col),
        need_target=False, shard=data.shard,
    ).samples  # fmt: skip
    cache = ReplyCache(folder)
    with contextlib.closing(cache):
        for spec in resolved.models:
            settings = candidate_settings(candidate, spec)
            for sample in samples:
                if (
                    cache.get(cache_key(settings.endpoint(), settings.messages(sample.input)))
                    is None
                ):
                    return False
    return True


def early(config: EvalConfig, services: ExitStack) -> Launch:
    """Probe the servers; start at once what the run will surely need. The edge of the serving
    stage: the config is cut here into the pieces the stages below take."""
    serving = ServingOptions.of(config)
    data = DataOptions.of(config)
    resolved = stack.plan(serving, judge_endpoints(config), candidates=data.answer_col is None)
    launch = Launch(resolved)
    if resolved.to_start and not answers_cached(
        CacheOptions.of(config), data, CandidateOptions.of(config), resolved
    ):
        launch.starting = stack.start(resolved, serving, services)
    return launch
