"""What to start, decided before the heavy imports: servers boot while MLflow is imported.

A run whose every answer is cached may not need the servers at all (the runner decides that
once the judges are known); a run missing an answer needs the candidate's server for sure, so it
is started at once.
"""

from __future__ import annotations

import contextlib
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ..calls.cache import ReplyCache, cache_key
from ..candidate.settings import candidate_settings
from ..config.settings import EvalConfig
from ..dataset import Columns, load_dataset
from . import stack


@dataclass
class Launch:
    """The plan for the servers, and those already starting."""

    resolved: stack.Resolved
    starting: stack.Starting | None = None


def judge_endpoints(config: EvalConfig) -> set[str]:
    """The gateway endpoints the run's built-in judges ask (custom ones default to the same)."""
    return {e for j in config.judges for e in j.endpoints} | {config.judge_endpoint}


def answers_cached(config: EvalConfig, resolved: stack.Resolved) -> bool:
    """Whether the reply cache holds every candidate answer the run needs."""
    if config.no_cache or config.refresh or config.answer_col is not None:
        return config.answer_col is not None
    folder = config.cache_dir.resolve()
    if not (folder / "replies.sqlite").exists():
        return False
    samples = load_dataset(
        Path(config.data), Columns(config.input_col, config.target_col, config.context_col),
        need_target=False, shard=config.shard,
    ).samples  # fmt: skip
    cache = ReplyCache(folder)
    with contextlib.closing(cache):
        for spec in resolved.models:
            settings = candidate_settings(config, spec)
            for sample in samples:
                if (
                    cache.get(cache_key(settings.endpoint(), settings.messages(sample.input)))
                    is None
                ):
                    return False
    return True


def early(config: EvalConfig, services: ExitStack) -> Launch:
    """Probe the servers; start at once what the run will surely need."""
    resolved = stack.plan(config, judge_endpoints(config), candidates=config.answer_col is None)
    launch = Launch(resolved)
    if resolved.to_start and not answers_cached(config, resolved):
        launch.starting = stack.start(resolved, config, services)
    return launch
