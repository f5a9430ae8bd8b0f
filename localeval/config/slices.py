"""The pieces of the run's configuration each stage is handed, cut once at the edge (`runner`,
`launch`, `prepare`) from the frozen `EvalConfig`: a stage sees the fields it uses and nothing
else, so what a function may depend on is in its signature."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..types import JudgeSpec, ModelSpec, Threshold
from .options import load_yaml
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
    # The gateway endpoints the built-in judges ask (custom ones default to the same).
    judge_endpoints: frozenset[str]

    @classmethod
    def of(cls, config: EvalConfig) -> ServingOptions:
        models = config.models
        return cls(
            stack=config.stack,
            judge_endpoints=frozenset(
                {e for j in config.judges for e in j.endpoints} | {config.judge_endpoint}
            ),
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
    concurrency: int  # calls in flight
    quiet: bool  # no progress bar

    @classmethod
    def of(cls, config: EvalConfig) -> CandidateOptions:
        return cls(
            system_prompt=config.system_prompt,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            concurrency=config.concurrency,
            quiet=config.quiet,
        )


@dataclass(frozen=True, kw_only=True)
class JudgingOptions:
    """Which judges, how they are asked, and how often (`judging/`)."""

    judges: tuple[JudgeSpec, ...]  # the built-in judges by name
    judges_file: Path | None
    # The judges file's YAML, read here at the edge (its judges are checked by `judging`).
    judges_yaml: Any
    judge_endpoint: str  # where a custom judge without its own endpoint asks
    temperature: float
    max_tokens: int
    repeats: int
    judge_format: str  # auto, json, text
    layout: str  # the order of a judge prompt's parts
    concurrency: int  # calls in flight per server
    concurrency_given: bool  # --concurrency given: the same for every judge, however served
    quiet: bool
    fail_under: tuple[Threshold, ...]  # checked against the metrics the judges will log
    pairwise: bool  # head to head between the run's models
    judge_turns: str  # in conversations: all, or only the last turn
    require_reference: bool  # a row without the reference a judge needs stops the run

    @classmethod
    def of(cls, config: EvalConfig) -> JudgingOptions:
        path = config.judges_file
        return cls(
            judges=tuple(config.judges),
            judges_file=path,
            judges_yaml=None
            if path is None
            else load_yaml(path, "Judges file", "Check --judges-file."),
            judge_endpoint=config.judge_endpoint,
            temperature=config.judge_temperature,
            max_tokens=config.judge_max_tokens,
            repeats=config.judge_repeats,
            judge_format=config.judge_format,
            layout=config.judge_prompt_layout,
            concurrency=config.concurrency,
            concurrency_given="concurrency" in config.given,
            quiet=config.quiet,
            fail_under=tuple(config.fail_under),
            pairwise=config.pairwise,
            judge_turns=config.judge_turns,
            require_reference=config.require_reference,
        )


@dataclass(frozen=True, kw_only=True)
class TrackingOptions:
    """Where results are stored, how runs are tagged, what they compare with (`tracking/`)."""

    tracking_uri: str | None  # None: the local store
    experiment: str
    tags: tuple[tuple[str, str], ...]
    traces: bool
    baseline: str | None  # a run id, or "last"
    run_name: str | None  # None: the model id and the start of the run id
    fail_if_worse: bool
    params: dict[str, str]  # the resolved config as the runs' params

    @classmethod
    def of(cls, config: EvalConfig) -> TrackingOptions:
        return cls(
            tracking_uri=config.tracking_uri,
            experiment=config.experiment,
            tags=tuple(config.tag),
            traces=not config.no_traces,
            baseline=config.baseline,
            run_name=config.run_name,
            fail_if_worse=config.fail_if_worse,
            params=config.loggable(),
        )


@dataclass(frozen=True, kw_only=True)
class DataOptions:
    """Where the rows are and which columns hold what (`dataset`)."""

    path: Path
    input_col: str
    turns_col: str
    target_col: str
    context_col: str
    answer_col: tuple[str, ...]  # answers from the data: no candidate is asked
    human_col: tuple[str, ...]
    shard: tuple[int, int] | None

    @classmethod
    def of(cls, config: EvalConfig) -> DataOptions:
        return cls(
            path=Path(config.data),
            input_col=config.input_col,
            turns_col=config.turns_col,
            target_col=config.target_col,
            context_col=config.context_col,
            answer_col=tuple(config.answer_col),
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


@dataclass(frozen=True, kw_only=True)
class OutputOptions:
    """What the user reads after the run, and where files go (`output/`)."""

    rows: str  # the terminal's per-row listing: compact, all, failed, none
    verbose: bool
    report: Path | None  # --report: the HTML page
    output: Path | None  # --output: per-row and aggregate exports
    agreement_only: bool  # --agreement: no rows to show, the agreement alone

    @classmethod
    def of(cls, config: EvalConfig) -> OutputOptions:
        return cls(
            rows=config.rows,
            verbose=config.verbose,
            report=config.report,
            output=config.output,
            agreement_only=config.agreement is not None,
        )
