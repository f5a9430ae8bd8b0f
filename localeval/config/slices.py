"""The pieces of the run's configuration each stage is handed, cut once at the edge (`runner`,
`launch`, `prepare`) from the frozen `EvalConfig`: a stage sees the fields it uses and nothing
else, so what a function may depend on is in its signature."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..types import ModelSpec
from .settings import EvalConfig


@dataclass(frozen=True, kw_only=True)
class ServingOptions:
    """Which servers the run needs and how the user named them (`serving/`)."""

    stack: str  # auto, external, embedded
    models: tuple[ModelSpec, ...]
    model_option: str | None  # how the user named the models (--model...), None: the default
    url_options: tuple[tuple[str, str], ...]  # (model id, how the user set its URL)
    gateway_url: str
    gateway_config: Path
    timeout: float

    @classmethod
    def of(cls, config: EvalConfig) -> ServingOptions:
        models = config.models
        return cls(
            stack=config.stack,
            models=models,
            model_option=config.given.get("model"),
            url_options=tuple(
                (m.id, given) for m in models if (given := config.url_given(m.id)) is not None
            ),
            gateway_url=config.gateway_url,
            gateway_config=config.gateway_config,
            timeout=config.timeout,
        )

    def url_given(self, model_id: str) -> str | None:
        """How the user set this model's server URL, or None when it is the default."""
        return dict(self.url_options).get(model_id)


@dataclass(frozen=True, kw_only=True)
class CandidateOptions:
    """The candidate's sampling and prompt, before a model's own overrides (`candidate/`)."""

    system_prompt: str
    temperature: float
    max_tokens: int

    @classmethod
    def of(cls, config: EvalConfig) -> CandidateOptions:
        return cls(
            system_prompt=config.system_prompt,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
        )


@dataclass(frozen=True, kw_only=True)
class DataOptions:
    """Where the rows are and which columns hold what (`dataset`)."""

    path: Path
    input_col: str
    target_col: str
    context_col: str
    answer_col: str | None  # answers from the data: no candidate is asked
    human_col: tuple[str, ...]
    shard: tuple[int, int] | None

    @classmethod
    def of(cls, config: EvalConfig) -> DataOptions:
        return cls(
            path=Path(config.data),
            input_col=config.input_col,
            target_col=config.target_col,
            context_col=config.context_col,
            answer_col=config.answer_col,
            human_col=tuple(config.human_col),
            shard=config.shard,
        )


@dataclass(frozen=True, kw_only=True)
class CacheOptions:
    """The reply cache: where, and whether it is read (`calls/cache`)."""

    folder: Path
    read: bool  # False under --no-cache or --refresh: every reply is asked anew

    @classmethod
    def of(cls, config: EvalConfig) -> CacheOptions:
        return cls(folder=config.cache_dir, read=not (config.no_cache or config.refresh))
