"""Judges, defined: MLflow's built-in judge prompts and custom ones from a YAML file.

Built-in judges come from `mlflow.metrics.genai` (v1), custom ones are built with
`make_genai_metric`; either way we take the definition, rubric and examples MLflow assembled.
Asking them is `grading`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mlflow.metrics.genai as genai
from mlflow.exceptions import MlflowException
from mlflow.metrics.genai.prompt_template import PromptTemplate
from mlflow.metrics.genai.prompts.v1 import EvaluationModel

from ..config import options as o
from ..config.options import option
from ..config.settings import BUILTIN_JUDGES, TEMPERATURE
from ..config.slices import JudgingOptions
from ..errors import ConfigError
from ..prompts import LAYOUT_MLFLOW, LAYOUT_PREFIX, prefix_first
from ..stats import AGGREGATIONS, DEFAULT_AGGREGATIONS
from ..types import COMBINATIONS, CONTEXT_ROLE, TARGETS_ROLE, Combination, JudgeInfo, JudgeSpec
from .pairs import PairwiseRubric
from .verdict import quote_answer


@dataclass(frozen=True)
class JudgeDef:
    """A judge fully resolved: MLflow's prompt, what it grades against, where and how it asks."""

    name: str
    version: str
    prompt: Any  # mlflow.metrics.genai.prompt_template.PromptTemplate
    grading_context_columns: tuple[str, ...]
    include_input: bool
    greater_is_better: bool
    aggregations: tuple[str, ...]
    endpoints: tuple[str, ...]
    temperature: float
    max_tokens: int
    low: int = 1
    high: int = 5
    prefix_prompt: Any = None  # the same words, the row last (see prompts.LAYOUT_PREFIX)
    combine: Combination = "mean"  # how its verdicts on a row (endpoints × repeats) make one

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def info(self) -> JudgeInfo:
        return JudgeInfo(
            self.name, self.version, self.endpoints, self.greater_is_better, self.low, self.high
        )

    def render(
        self,
        question: str,
        answer: str,
        context: dict[str, str],
        layout: str = LAYOUT_MLFLOW,
        verdict_format: str = "",
    ) -> str:
        """The grading prompt for one row: MLflow's own, or its words with the row last.

        Args:
            verdict_format: our instruction for the verdict's form (JSON), if any: appended to
                MLflow's order, placed before the row in the prefix layout.
        """
        block = ""
        if self.grading_context_columns:  # the same block MLflow's make_genai_metric builds
            block = "Additional information used by the model:\n" + "\n".join(
                f"key: {c}\nvalue:\n{context[c]}" for c in self.grading_context_columns
            )
        values = {
            "input": question if self.include_input else None,
            "output": quote_answer(answer),
            "grading_context_columns": block,
        }
        if layout == LAYOUT_PREFIX:
            return self.prefix_prompt.format(**values, verdict_format=verdict_format)
        return self.prompt.format(**values) + verdict_format


def _from_mlflow(
    args: dict[str, Any], endpoints: tuple[str, ...], temperature: float, max_tokens: int
) -> JudgeDef:
    prompt = EvaluationModel(
        args["name"],
        args["definition"],
        args["grading_prompt"],
        args["examples"],
        args["model"],
        include_input=args["include_input"],
    ).to_dict()["eval_prompt"]
    reordered = prefix_first(str(prompt))
    return JudgeDef(
        name=args["name"],
        version=args["version"],
        prompt=prompt,
        grading_context_columns=tuple(args["grading_context_columns"] or ()),
        include_input=bool(args["include_input"]),
        greater_is_better=bool(args["greater_is_better"]),
        aggregations=tuple(args["aggregations"] or DEFAULT_AGGREGATIONS),
        endpoints=endpoints,
        temperature=temperature,
        max_tokens=max_tokens,
        # Without MLflow's v1 layout to reorder, the prefix layout is MLflow's own order.
        prefix_prompt=PromptTemplate(reordered or str(prompt) + "{verdict_format}"),
    )


def builtin_judge(spec: JudgeSpec, temperature: float, max_tokens: int) -> JudgeDef:
    """One of MLflow's five built-in judges, routed to the spec's endpoints."""
    if spec.name not in BUILTIN_JUDGES:
        raise ConfigError(
            f"Unknown judge {spec.name!r} in --judge. Built-in judges: "
            f"{', '.join(BUILTIN_JUDGES)}; define others in a --judges-file."
        )
    metric = getattr(genai, spec.name)(model=f"endpoints:/{spec.endpoints[0]}")
    judge = _from_mlflow(metric.genai_metric_args, spec.endpoints, temperature, max_tokens)
    return replace(judge, combine=spec.combine)


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """How a judge samples: the run's --judge-temperature and --judge-max-tokens, merged with a
    judge's own (a config file's `judges:` entry, a judges file's `parameters:`)."""

    temperature: float
    max_tokens: int

    def merge(self, temperature: float | None = None, max_tokens: int | None = None) -> Sampling:
        """These settings with a judge's own overrides (None keeps the run's)."""
        return replace(
            self,
            temperature=self.temperature if temperature is None else temperature,
            max_tokens=self.max_tokens if max_tokens is None else max_tokens,
        )


def resolve_judges(options: JudgingOptions) -> list[JudgeDef]:
    """The built-in judges named by --judge and the custom ones from --judges-file."""
    run = Sampling(temperature=options.temperature, max_tokens=options.max_tokens)
    defs = []
    for spec in options.judges:
        own = run.merge(spec.temperature, spec.max_tokens)
        defs.append(builtin_judge(spec, own.temperature, own.max_tokens))
    if options.judges_file is not None:
        defs += load_custom_judges(
            options.judges_file, options.judges_yaml, options.judge_endpoint, run
        )
    names = [d.name for d in defs]
    if len(set(names)) != len(names):
        raise ConfigError(f"A judge is named twice: {names}. Each metric needs its own name.")
    return defs


def needed_columns(judges: list[JudgeDef]) -> dict[str, list[str]]:
    """Each grading-context column the judges need, with the judges that need it."""
    out: dict[str, list[str]] = {}
    for judge in judges:
        for column in judge.grading_context_columns:
            out.setdefault(column, []).append(judge.name)
    return out


# ---- custom judges from YAML: the file's schema, declared once ---------------------------------


def _grade(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise ValueError("must be an integer from 1 to 5")
    return value


def _names(value: Any) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(c, str) for c in values):
        raise ValueError("must be a list of column names")
    return tuple(values)


def _judge_name(value: Any) -> str:
    name = o.non_empty(value)
    if name in BUILTIN_JUDGES or not name.replace("_", "").isalnum():
        raise ValueError("must be letters, digits and _ and not a built-in judge's name")
    return name


def _aggregations(value: Any) -> tuple[str, ...]:
    values = tuple(map(str, o.items(value)))
    unknown = sorted(set(values) - set(AGGREGATIONS))
    if unknown:
        raise ValueError(f"unknown {', '.join(unknown)}; known: {', '.join(AGGREGATIONS)}")
    return values


def _context(value: Any) -> dict[str, Any] | str:
    if not isinstance(value, dict | str):
        raise ValueError("a mapping of grading column to value, or a text")
    return value


@dataclass(frozen=True)
class _Example:
    output: str = option(o.REQUIRED, parse=o.text)
    score: int = option(o.REQUIRED, parse=_grade)
    justification: str = option(o.REQUIRED, parse=o.text)
    input: str | None = option(None, parse=o.text)
    grading_context: dict[str, Any] | str | None = option(None, parse=_context)


@dataclass(frozen=True)
class _Parameters:
    temperature: float | None = option(None, parse=TEMPERATURE)
    max_tokens: int | None = option(None, parse=o.integer(1))


def _fail(key: str, what: str) -> ValueError:
    return ValueError(f"{key}: {what}")


@dataclass(frozen=True)
class _CustomJudge:
    name: str = option(o.REQUIRED, parse=_judge_name)
    definition: str = option(o.REQUIRED, parse=o.non_empty)
    grading_prompt: str = option(o.REQUIRED, parse=o.non_empty)
    examples: tuple[_Example, ...] = option((), parse=o.records(_Example, _fail))
    grading_context_columns: tuple[str, ...] = option((), parse=_names)
    include_input: bool = option(True, parse=o.boolean)
    parameters: _Parameters = option(_Parameters(), parse=o.nested(_Parameters, _fail))
    aggregations: tuple[str, ...] = option(DEFAULT_AGGREGATIONS, parse=_aggregations)
    greater_is_better: bool = option(True, parse=o.boolean)
    combine: Combination = option("mean", parse=o.choice(*COMBINATIONS))
    endpoint: str | None = option(None, parse=o.text)
    endpoints: tuple[str, ...] = option((), parse=lambda v: tuple(map(str, o.items(v))))
    version: str = option("v1", parse=o.text)


def load_custom_judges(
    path: Path, loaded: Any, default_endpoint: str, sampling: Sampling
) -> list[JudgeDef]:
    """Judges defined in a YAML file (`loaded`: its content), built with MLflow's
    make_genai_metric.

    Errors name the file and the YAML key (e.g. `judges[0].examples[1].score`).
    """
    items = loaded.get("judges") if isinstance(loaded, dict) else None
    if isinstance(loaded, dict) and "judges" not in loaded and "pairwise" in loaded:
        return []  # a file with a head-to-head rubric only
    if not isinstance(items, list) or not items:
        raise ConfigError(f"Judges file {path}: expected a top-level 'judges:' list of judges.")

    def fail(key: str, what: str) -> ConfigError:
        return ConfigError(f"Judges file {path}, key {key}: {what}.")

    out = []
    for i, item in enumerate(items):
        where = f"judges[{i}]"
        if not isinstance(item, dict):
            raise fail(where, "each judge must be a mapping with name, definition, grading_prompt")
        try:
            spec = o.record(_CustomJudge, item, where, _fail)
        except ValueError as exc:  # "<key path>: <what>" from a field's parser
            key, _, what = str(exc).partition(": ")
            raise fail(key, what) from None
        out.append(_custom_judge(spec, where, fail, default_endpoint, sampling))
    return out


def pairwise_rubric(path: Path | None, loaded: Any) -> PairwiseRubric:
    """The judges file's `pairwise:` rubric (name, version, criteria, endpoint), or ours."""
    item = loaded.get("pairwise") if isinstance(loaded, dict) else None
    if path is None or item is None:
        return PairwiseRubric()
    where = f"Judges file {path}, key pairwise"
    if not isinstance(item, dict) or not isinstance(item.get("criteria"), str):
        raise ConfigError(
            f"{where}: expected a mapping with criteria: (the text that says which answer is "
            "better) and optionally name, version, endpoint."
        )
    unknown = sorted(set(item) - {"name", "version", "criteria", "endpoint"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown}; use name, version, criteria, endpoint."
        )
    name = str(item.get("name", "custom_preference"))
    if name == PairwiseRubric.name:
        raise ConfigError(
            f"{where}.name: {name!r} is ours (answer_preference/v1); give your rubric its own "
            "name, so its verdicts are never mixed with ours."
        )
    criteria = item["criteria"].strip()
    if not criteria:
        raise ConfigError(f"{where}.criteria: empty; say which answer should win.")
    return PairwiseRubric(
        name=name,
        version=str(item.get("version", "v1")),
        criteria=criteria,
        endpoint=str(item["endpoint"]) if item.get("endpoint") else None,
    )


def _custom_judge(
    spec: _CustomJudge, where: str, fail: Any, default: str, sampling: Sampling
) -> JudgeDef:
    columns = list(spec.grading_context_columns)
    examples = []
    for j, example in enumerate(spec.examples):
        at = f"{where}.examples[{j}].grading_context"
        context = example.grading_context
        if columns and context is None:
            raise fail(at, f"required: a value for each of {columns}")
        if isinstance(context, dict) and set(context) != set(columns):
            raise fail(at, f"keys must be exactly {columns}")
        examples.append(
            genai.EvaluationExample(
                input=example.input,
                output=example.output,
                score=example.score,
                justification=example.justification,
                grading_context=context,
            )
        )
    endpoints = spec.endpoints or (spec.endpoint or default,)
    own = sampling.merge(spec.parameters.temperature, spec.parameters.max_tokens)
    t, m = own.temperature, own.max_tokens
    try:
        metric = genai.make_genai_metric(
            name=spec.name,
            definition=spec.definition,
            grading_prompt=spec.grading_prompt,
            examples=examples or None,
            version=spec.version,
            model=f"endpoints:/{endpoints[0]}",
            grading_context_columns=columns,
            include_input=spec.include_input,
            parameters={"temperature": t, "max_tokens": m},
            aggregations=list(spec.aggregations),
            greater_is_better=spec.greater_is_better,
        )
    except MlflowException as exc:
        raise fail(where, f"MLflow rejected it: {exc.message}") from None
    judge = _from_mlflow(metric.genai_metric_args, tuple(endpoints), t, m)
    return replace(judge, combine=spec.combine)


def judge_roles(columns: dict[str, list[str]]) -> tuple[bool, bool, tuple[str, ...]]:
    """(needs targets, needs context, other data columns) from `needed_columns`."""
    extra = tuple(c for c in columns if c not in (TARGETS_ROLE, CONTEXT_ROLE))
    return TARGETS_ROLE in columns, CONTEXT_ROLE in columns, extra
