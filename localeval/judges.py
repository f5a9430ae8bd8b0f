"""LLM judges as MLflow metrics, routed to gateway endpoints.

The prompts are MLflow's own: built-in judges come from `mlflow.metrics.genai` (v1), custom ones
are built with `make_genai_metric` from a YAML file; either way we take the definition, rubric and
examples MLflow assembled. The call goes through our chat client (the same one the candidate uses,
pointed at the gateway's OpenAI-compatible route), so it shares retries, the reply cache and the
concurrency knob, and the reply is read with our tolerant parser: "could not grade" is recorded
with its reason, never a silent NaN. A judge may ask several endpoints, several times each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from inspect import Parameter, Signature
from pathlib import Path
from typing import Any

from . import defaults, stats
from .candidate import answer_failed
from .client import CallFailed, ChatClient, Endpoint, Runtime, make_client
from .config import JudgeSpec
from .errors import ConfigError, EvalError
from .pool import map_ordered
from .verdict import CANDIDATE_FAILED, JUDGE_ERROR, Score, parse_json_verdict, parse_verdict

BUILTIN_JUDGES = (
    "answer_similarity",
    "answer_correctness",
    "answer_relevance",
    "relevance",
    "faithfulness",
)
# Grading-context names that map to our standard columns; any other name is a data column.
TARGETS, CONTEXT = "targets", "context"


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


@dataclass(frozen=True)
class JudgeOptions:
    """Run-wide judging options."""

    gateway_url: str
    judge_format: str = defaults.JUDGE_FORMAT
    repeats: int = defaults.JUDGE_REPEATS
    server_ids: dict[str, str] = field(default_factory=dict)  # endpoint -> what answers there


def _from_mlflow(
    args: dict[str, Any], endpoints: tuple[str, ...], temperature: float, max_tokens: int
) -> JudgeDef:
    from mlflow.metrics.genai.prompts.v1 import EvaluationModel

    prompt = EvaluationModel(
        args["name"],
        args["definition"],
        args["grading_prompt"],
        args["examples"],
        args["model"],
        include_input=args["include_input"],
    ).to_dict()["eval_prompt"]
    return JudgeDef(
        name=args["name"],
        version=args["version"],
        prompt=prompt,
        grading_context_columns=tuple(args["grading_context_columns"] or ()),
        include_input=bool(args["include_input"]),
        greater_is_better=bool(args["greater_is_better"]),
        aggregations=tuple(args["aggregations"] or ("mean", "variance", "p90")),
        endpoints=endpoints,
        temperature=temperature,
        max_tokens=max_tokens,
    )


def builtin_judge(spec: JudgeSpec, temperature: float, max_tokens: int) -> JudgeDef:
    """One of MLflow's five built-in judges, routed to the spec's endpoints."""
    import mlflow.metrics.genai as genai

    if spec.name not in BUILTIN_JUDGES:
        raise ConfigError(
            f"Unknown judge {spec.name!r} in --judge. Built-in judges: "
            f"{', '.join(BUILTIN_JUDGES)}; define others in a --judges-file."
        )
    metric = getattr(genai, spec.name)(model=f"endpoints:/{spec.endpoints[0]}")
    return _from_mlflow(metric.genai_metric_args, spec.endpoints, temperature, max_tokens)


def needed_columns(judges: list[JudgeDef]) -> set[str]:
    return {c for j in judges for c in j.grading_context_columns}


# ---- custom judges from YAML ---------------------------------------------------------------

_CUSTOM_KEYS = {
    "name",
    "definition",
    "grading_prompt",
    "examples",
    "grading_context_columns",
    "include_input",
    "parameters",
    "aggregations",
    "greater_is_better",
    "endpoint",
    "endpoints",
    "version",
}
_EXAMPLE_KEYS = {"input", "output", "score", "justification", "grading_context"}


def load_custom_judges(
    path: Path, default_endpoint: str, temperature: float, max_tokens: int
) -> list[JudgeDef]:
    """Judges defined in a YAML file, built with MLflow's make_genai_metric.

    Errors name the file and the YAML key (e.g. `judges[0].examples[1].score`).
    """
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Judges file {path} does not exist. Check --judges-file.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"Judges file {path} is not valid YAML: {exc}.") from None
    items = loaded.get("judges") if isinstance(loaded, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(f"Judges file {path}: expected a top-level 'judges:' list of judges.")
    return [
        _custom_judge(path, f"judges[{i}]", item, default_endpoint, temperature, max_tokens)
        for i, item in enumerate(items)
    ]


def _custom_judge(
    path: Path, where: str, item: Any, default_endpoint: str, temperature: float, max_tokens: int
) -> JudgeDef:
    import mlflow.metrics.genai as genai
    from mlflow.exceptions import MlflowException

    def fail(key: str, what: str) -> ConfigError:
        return ConfigError(f"Judges file {path}, key {where}{key}: {what}.")

    if not isinstance(item, dict):
        raise fail("", "each judge must be a mapping with name, definition, grading_prompt")
    for key in item:
        if key not in _CUSTOM_KEYS:
            raise fail(f".{key}", f"unknown key; known keys: {', '.join(sorted(_CUSTOM_KEYS))}")
    for key in ("name", "definition", "grading_prompt"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise fail(f".{key}", "required, a non-empty string")
    name = item["name"].strip()
    if name in BUILTIN_JUDGES or not name.replace("_", "").isalnum():
        raise fail(".name", "must be letters, digits and _ and not a built-in judge's name")
    columns = item.get("grading_context_columns", [])
    columns = [columns] if isinstance(columns, str) else columns
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise fail(".grading_context_columns", "must be a list of column names")
    examples = []
    for j, example in enumerate(item.get("examples") or []):
        at = f".examples[{j}]"
        if not isinstance(example, dict):
            raise fail(at, "each example must be a mapping")
        unknown = set(example) - _EXAMPLE_KEYS
        if unknown:
            raise fail(f"{at}.{sorted(unknown)[0]}", f"unknown key; use {sorted(_EXAMPLE_KEYS)}")
        for key in ("output", "score", "justification"):
            if example.get(key) is None:
                raise fail(f"{at}.{key}", "required")
        if not isinstance(example["score"], int) or not 1 <= example["score"] <= 5:
            raise fail(f"{at}.score", "must be an integer from 1 to 5")
        context = example.get("grading_context")
        if columns and not isinstance(context, dict | str):
            raise fail(f"{at}.grading_context", f"required: a value for each of {columns}")
        if isinstance(context, dict) and set(context) != set(columns):
            raise fail(f"{at}.grading_context", f"keys must be exactly {columns}")
        examples.append(
            genai.EvaluationExample(
                input=example.get("input"),
                output=str(example["output"]),
                score=example["score"],
                justification=str(example["justification"]),
                grading_context=context,
            )
        )
    params = item.get("parameters") or {}
    if not isinstance(params, dict) or set(params) - {"temperature", "max_tokens"}:
        raise fail(".parameters", "a mapping with temperature and/or max_tokens")
    endpoints = item.get("endpoints") or [item.get("endpoint") or default_endpoint]
    endpoints = [endpoints] if isinstance(endpoints, str) else endpoints
    aggregations = item.get("aggregations") or ["mean", "variance", "p90"]
    unknown_aggs = set(aggregations) - {"mean", "variance", "p90", "min", "max", "median"}
    if unknown_aggs:
        raise fail(".aggregations", f"unknown {sorted(unknown_aggs)}")
    try:
        metric = genai.make_genai_metric(
            name=name,
            definition=item["definition"],
            grading_prompt=item["grading_prompt"],
            examples=examples or None,
            version=str(item.get("version", "v1")),
            model=f"endpoints:/{endpoints[0]}",
            grading_context_columns=columns,
            include_input=bool(item.get("include_input", True)),
            parameters={
                "temperature": float(params.get("temperature", temperature)),
                "max_tokens": int(params.get("max_tokens", max_tokens)),
            },
            aggregations=aggregations,
            greater_is_better=bool(item.get("greater_is_better", True)),
        )
    except MlflowException as exc:
        raise fail("", f"MLflow rejected it: {exc.message}") from None
    return _from_mlflow(
        metric.genai_metric_args,
        tuple(endpoints),
        float(params.get("temperature", temperature)),
        int(params.get("max_tokens", max_tokens)),
    )


# ---- grading ---------------------------------------------------------------------------------


def _context_block(columns: tuple[str, ...], values: dict[str, list[Any]], index: int) -> str:
    # The same block MLflow's make_genai_metric puts in the prompt.
    if not columns:
        return ""
    return "Additional information used by the model:\n" + "\n".join(
        f"key: {c}\nvalue:\n{values[c][index]}" for c in columns
    )


@dataclass
class RowVerdicts:
    """Every verdict one row got: per endpoint, one per repeat; and the call usage."""

    by_endpoint: dict[str, list[Score]] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0

    def scored(self) -> list[float]:
        return [s.value for v in self.by_endpoint.values() for s in v if s.value is not None]

    def combined(self) -> Score:
        """The row's score: the mean of all scored verdicts; unscored only if none scored."""
        scored = self.scored()
        flat = [s for v in self.by_endpoint.values() for s in v]
        first = next((s for s in flat if s.scored), flat[0])
        text = first.justification or ""
        if len(flat) > 1:
            summary = " | ".join(
                f"{e}: " + ",".join("—" if s.value is None else f"{s.value:g}" for s in v)
                for e, v in self.by_endpoint.items()
            )
            text = f"[{summary}] {text}"
        if not scored:
            return Score(None, text, first.reason, first.raw)
        return Score(sum(scored) / len(scored), text, None, first.raw)


class Judge:
    """One judge metric: grades rows through the gateway and keeps every verdict it got."""

    def __init__(self, definition: JudgeDef, options: JudgeOptions, runtime: Runtime) -> None:
        self.definition = definition
        self.options = options
        self.runtime = runtime
        self.last: list[RowVerdicts] = []
        self.fatal: EvalError | None = None  # kept: MLflow wraps what a metric raises
        self._clients = {e: self._client(e) for e in definition.endpoints}
        self._json_refused = False

    def _client(self, endpoint: str) -> dict[str, ChatClient]:
        d = self.definition

        def client(extra: dict[str, Any]) -> ChatClient:
            base = self.options.gateway_url.rstrip("/") + "/v1"
            server_id = self.options.server_ids.get(endpoint)
            return make_client(
                Endpoint(base, endpoint, d.temperature, d.max_tokens, extra, server_id),
                self.runtime,
            )

        out = {}
        for repeat in range(self.options.repeats):
            # A distinct seed per repeat: K real samples, each cached under its own key.
            extra: dict[str, Any] = {"seed": repeat} if self.options.repeats > 1 else {}
            out[f"text{repeat}"] = client(extra)
            out[f"json{repeat}"] = client({**extra, "response_format": {"type": "json_object"}})
        return out

    def _ask(self, endpoint: str, repeat: int, payload: str, usage: RowVerdicts) -> Score:
        clients = self._clients[endpoint]
        use_json = self.options.judge_format == "json" and not self._json_refused
        try:
            if use_json:
                text = payload + defaults.JSON_VERDICT.format(
                    low=self.definition.low, high=self.definition.high
                )
                try:
                    reply = clients[f"json{repeat}"].complete([{"role": "user", "content": text}])
                except CallFailed as exc:
                    if not exc.reason.startswith("HTTP 400"):
                        raise
                    # The server refused response_format: fall back to reading text verdicts.
                    self._json_refused = True
                    return self._ask(endpoint, repeat, payload, usage)
            else:
                reply = clients[f"text{repeat}"].complete([{"role": "user", "content": payload}])
        except CallFailed as exc:
            return Score(None, f"judge call failed: {exc.reason}", JUDGE_ERROR)
        usage.prompt_tokens += reply.prompt_tokens or 0
        usage.completion_tokens += reply.completion_tokens or 0
        usage.latency_s += 0.0 if reply.cached else reply.latency_s
        parse = parse_json_verdict if use_json else parse_verdict
        return parse(reply.text, self.definition.low, self.definition.high)

    def grade(self, payload: str | None) -> RowVerdicts:
        try:
            return self._grade(payload)
        except EvalError as exc:  # auth or a missing endpoint: stop the run with our message
            self.fatal = exc
            raise

    def _grade(self, payload: str | None) -> RowVerdicts:
        row = RowVerdicts()
        for endpoint in self.definition.endpoints:
            if payload is None:
                row.by_endpoint[endpoint] = [
                    Score(None, "the candidate produced no answer", CANDIDATE_FAILED)
                ]
                continue
            row.by_endpoint[endpoint] = [
                self._ask(endpoint, k, payload, row) for k in range(self.options.repeats)
            ]
        return row

    def eval_fn(
        self, predictions: Any, metrics: Any, inputs: Any, candidate_error: Any, *context: Any
    ) -> Any:
        from mlflow.metrics import MetricValue

        d = self.definition
        values = {c: list(v) for c, v in zip(d.grading_context_columns, context)}
        payloads = [
            None
            if answer_failed(error)
            else d.prompt.format(
                input=(question if d.include_input else None),
                output=answer,
                grading_context_columns=_context_block(d.grading_context_columns, values, i),
            )
            for i, (question, answer, error) in enumerate(
                zip(list(inputs), list(predictions), list(candidate_error))
            )
        ]
        self.last = map_ordered(
            self.grade,
            payloads,
            self.runtime.concurrency,
            desc=f"judge {d.name}",
            quiet=self.runtime.quiet,
        )
        combined = [r.combined() for r in self.last]
        return MetricValue(
            scores=[s.value for s in combined],
            justifications=[_shown(s) for s in combined],
            aggregate_results=self.aggregates(),
        )

    def aggregates(self) -> dict[str, float]:
        """Aggregates of the last grading: MLflow's, plus unscored share, CI, agreement, usage."""
        rows = self.last
        values = [r.combined().value for r in rows]
        out = aggregate(values, self.definition.aggregations)
        if self.options.repeats > 1:
            per_endpoint = [[s.value for s in v] for r in rows for v in r.by_endpoint.values()]
            out["self_consistency"] = stats.self_consistency(per_endpoint)
            spreads = [s for s in map(stats.spread, per_endpoint) if s is not None]
            if spreads:
                out["mean_spread"] = float(sum(spreads) / len(spreads))
        if len(self.definition.endpoints) > 1:
            out.update(_agreement(rows, self.definition.endpoints))
        out["failed_rows"] = float(len(self.failed_rows()))
        prompt = sum(r.prompt_tokens for r in rows)
        completion = sum(r.completion_tokens for r in rows)
        latency = sum(r.latency_s for r in rows)
        out["judge_prompt_tokens"] = float(prompt)
        out["judge_completion_tokens"] = float(completion)
        if latency > 0:
            out["judge_tokens_per_s"] = completion / latency
        return out

    def failed_rows(self) -> set[int]:
        """Rows of the last grading where a judge call failed after retries."""
        return {
            i
            for i, r in enumerate(self.last)
            if any(s.reason == JUDGE_ERROR for v in r.by_endpoint.values() for s in v)
        }

    def verdicts(self) -> list[dict[str, Any]]:
        """Every verdict of the last grading, for the run's `judge_verdicts/<name>.json`."""
        return [
            {
                e: [
                    {
                        "score": s.value,
                        "reason": s.reason,
                        "justification": s.justification,
                        "raw": s.raw,
                    }
                    for s in v
                ]
                for e, v in r.by_endpoint.items()
            }
            for r in self.last
        ]

    def metric(self) -> Any:
        """This judge as an MLflow metric `<name>/<version>`."""
        from mlflow.metrics import make_metric

        d = self.definition

        def eval_fn(*args: Any) -> Any:
            return self.eval_fn(*args)

        eval_fn.__signature__ = Signature(  # type: ignore[attr-defined]
            [
                Parameter(n, Parameter.POSITIONAL_OR_KEYWORD)
                for n in (
                    "predictions",
                    "metrics",
                    "inputs",
                    "candidate_error",
                    *d.grading_context_columns,
                )
            ]
        )
        return make_metric(
            eval_fn=eval_fn,
            greater_is_better=d.greater_is_better,
            name=d.name,
            version=d.version,
            metric_details=str(d.prompt),
        )


def _agreement(rows: list[RowVerdicts], endpoints: tuple[str, ...]) -> dict[str, float]:
    # Each endpoint's per-row mean over its repeats; kappa wants the first repeat's integer grade.
    def mean(scores: list[Score]) -> float | None:
        vals = [s.value for s in scores if s.value is not None]
        return sum(vals) / len(vals) if vals else None

    def grade(score: Score) -> float | None:  # kappa's categories are the integer grades
        return None if score.value is None else float(round(score.value))

    if len(endpoints) == 2:
        a = [grade(r.by_endpoint[endpoints[0]][0]) for r in rows]
        b = [grade(r.by_endpoint[endpoints[1]][0]) for r in rows]
        kappa = stats.cohen_kappa_quadratic(a, b)
        return {} if kappa != kappa else {"agreement_kappa": kappa}
    matrix = [[mean(r.by_endpoint[e]) for e in endpoints] for r in rows]
    alpha = stats.krippendorff_alpha(matrix, level="interval")
    return {} if alpha != alpha else {"agreement_alpha": alpha}


def _shown(score: Score) -> str:
    """The justification column: the judge's words, prefixed with why when it could not grade."""
    text = score.justification or ""
    return f"[unscored: {score.reason}] {text}".strip() if score.reason else text


def aggregate(
    values: list[float | None], aggregations: tuple[str, ...] = ("mean", "variance", "p90")
) -> dict[str, float]:
    """The chosen aggregations over the scored rows, their 95% bootstrap interval, and the
    share of rows left unscored (excluded from everything else)."""
    import numpy as np

    scored = np.array([v for v in values if v is not None], dtype=float)
    out = {"unscored_ratio": 1 - len(scored) / len(values) if values else 0.0}
    if not len(scored):
        return out
    functions = {
        "mean": np.mean,
        "variance": np.var,
        "p90": lambda x: np.percentile(x, 90),
        "min": np.min,
        "max": np.max,
        "median": np.median,
    }
    out.update({name: float(functions[name](scored)) for name in aggregations})
    low, high = stats.bootstrap_ci(
        list(scored),
        confidence=defaults.CONFIDENCE,
        n_resamples=defaults.BOOTSTRAP_RESAMPLES,
        seed=defaults.BOOTSTRAP_SEED,
    )
    out["ci_low"], out["ci_high"] = float(low), float(high)
    return out
