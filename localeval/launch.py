"""What to start, decided before the heavy imports: servers boot while MLflow is imported.

A run whose every answer is cached may not need the servers at all (the runner decides that
once the judges are known); a run missing an answer needs the candidate's server for sure, so it
is started at once.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

from .candidate.settings import answers_cached
from .config.settings import EvalConfig
from .config.slices import CacheOptions, CandidateOptions, DataOptions, ServingOptions
from .serving import stack


@dataclass
class Launch:
    """The plan for the servers, and those already starting."""

    resolved: stack.Resolved
    starting: stack.Starting | None = None


def early(config: EvalConfig, services: ExitStack) -> Launch:
    """Probe the servers; start at once what the run will surely need. The edge of the serving
    stage: the config is cut here into the pieces the stages below take."""
    serving = ServingOptions.of(config)
    data = DataOptions.of(config)
    resolved = stack.plan(serving, candidates=not data.answer_col)
    launch = Launch(resolved)
    if resolved.to_start and not answers_cached(
        CacheOptions.of(config), data, CandidateOptions.of(config), resolved.models
    ):
        launch.starting = stack.start(resolved, serving, services)
    return launch
