"""LLM judges as MLflow metrics, routed to a gateway endpoint.

The prompts are MLflow's own (`mlflow.metrics.genai`, version v1): we build the built-in metric
with `model="endpoints:/<name>"` and take its definition, rubric and examples. The call goes
through our chat client (the same one the candidate uses, pointed at the gateway's
OpenAI-compatible route) so it shares retries, the reply cache and concurrency, and the reply is
read with our tolerant parser: "could not grade" is recorded with its reason, never a silent NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from inspect import Parameter, Signature
from typing import Any

from .candidate import Runtime, make_client
from .client import CallFailed, Endpoint
from .config import JudgeSpec
from .errors import ConfigError
from .pool import map_ordered
from .verdict import CANDIDATE_FAILED, JUDGE_ERROR, Score, parse_verdict

BUILTIN_JUDGES = (
    "answer_similarity",
    "answer_correctness",
    "answer_relevance",
    "relevance",
    "faithfulness",
)


@dataclass(frozen=True)
class JudgeParams:
    """How the judge is called: gateway, sampling and reply limit."""

    gateway_url: str
    temperature: float
    max_tokens: int


def _builtin(name: str, endpoint: str) -> Any:
    import mlflow.metrics.genai as genai

    if name not in BUILTIN_JUDGES:
        raise ConfigError(
            f"Unknown judge {name!r} in --judge. Built-in judges: {', '.join(BUILTIN_JUDGES)}."
        )
    return getattr(genai, name)(model=f"endpoints:/{endpoint}")


def needs(name: str) -> set[str]:
    """Which data columns a built-in judge grades against: 'targets' and/or 'context'."""
    return set(_builtin(name, "chat").genai_metric_args["grading_context_columns"])


def _context_block(columns: list[str], values: dict[str, Any], index: int) -> str:
    # The same block MLflow's make_genai_metric puts in the prompt.
    if not columns:
        return ""
    return "Additional information used by the model:\n" + "\n".join(
        f"key: {c}\nvalue:\n{values[c][index]}" for c in columns
    )


def build_judge(spec: JudgeSpec, params: JudgeParams, runtime: Runtime) -> Any:
    """An MLflow metric `<name>/v1` that grades each row through the gateway endpoint."""
    from mlflow.metrics import MetricValue, make_metric
    from mlflow.metrics.genai.prompts.v1 import EvaluationModel

    args = _builtin(spec.name, spec.endpoint).genai_metric_args
    prompt = EvaluationModel(
        args["name"],
        args["definition"],
        args["grading_prompt"],
        args["examples"],
        args["model"],
        include_input=args["include_input"],
    ).to_dict()["eval_prompt"]
    columns: list[str] = list(args["grading_context_columns"])
    endpoint = Endpoint(
        params.gateway_url.rstrip("/") + "/v1", spec.endpoint, params.temperature, params.max_tokens
    )
    client = make_client(endpoint, runtime)

    def grade_one(payload: str | None) -> Score:
        if payload is None:
            return Score(None, "the candidate produced no answer", CANDIDATE_FAILED)
        try:
            reply = client.complete([{"role": "user", "content": payload}])
        except CallFailed as exc:
            return Score(None, f"judge call failed: {exc.reason}", JUDGE_ERROR)
        return parse_verdict(reply.text)

    def eval_fn(
        predictions: Any, metrics: Any, inputs: Any, candidate_error: Any, *context: Any
    ) -> Any:
        values = {c: list(v) for c, v in zip(columns, context)}
        payloads = [
            None
            if error
            else prompt.format(
                input=(question if args["include_input"] else None),
                output=answer,
                grading_context_columns=_context_block(columns, values, i),
            )
            for i, (question, answer, error) in enumerate(
                zip(list(inputs), list(predictions), list(candidate_error))
            )
        ]
        scores = map_ordered(
            grade_one, payloads, runtime.concurrency, desc=f"judge {spec.name}", quiet=runtime.quiet
        )
        return MetricValue(
            scores=[s.value for s in scores],
            justifications=[_shown(s) for s in scores],
            aggregate_results=aggregate([s.value for s in scores]),
        )

    eval_fn.__signature__ = Signature(  # type: ignore[attr-defined]
        [
            Parameter(n, Parameter.POSITIONAL_OR_KEYWORD)
            for n in ("predictions", "metrics", "inputs", "candidate_error", *columns)
        ]
    )
    return make_metric(
        eval_fn=eval_fn,
        greater_is_better=args["greater_is_better"],
        name=spec.name,
        version=args["version"],
        metric_details=str(prompt),
    )


def _shown(score: Score) -> str:
    """The justification column: the judge's words, prefixed with why when it could not grade."""
    text = score.justification or ""
    return f"[unscored: {score.reason}] {text}".strip() if score.reason else text


def aggregate(values: list[float | None]) -> dict[str, float]:
    """mean, variance and p90 over the scored rows, and the share of rows left unscored."""
    import numpy as np

    scored = np.array([v for v in values if v is not None], dtype=float)
    unscored_ratio = 1 - len(scored) / len(values) if values else 0.0
    if not len(scored):
        return {"unscored_ratio": unscored_ratio}
    return {
        "mean": float(scored.mean()),
        "variance": float(scored.var()),
        "p90": float(np.percentile(scored, 90)),
        "unscored_ratio": unscored_ratio,
    }
