"""Our judges as MLflow 3 scorers, for `mlflow.genai.evaluate(data=..., scorers=[judge(...)])`.

`judge("answer_similarity")` (or a judge of a YAML judges file) grades each row with OUR grading
code, not MLflow's: the same prompt (`JudgeDef.render`, in the runner's default layout), the same
tolerant verdict parser, the same re-ask when a verdict was cut off while still reasoning, the
same retries and, with `cache_dir`, the same reply cache. A row's score is therefore the score
`mlflow_evaluate.py` would give it, and "could not grade" stays a reason, never a made-up score.

Each row gets one `Feedback`:

- named after the judge without its version (`answer_similarity`), as the runner names the
  feedback on its traces: MLflow reads a `/` in an assessment's name as `<scorer>/<part>` (its
  UI shows the part after the slash, its aggregation looks the scorer up by it). The metric's
  full key (`answer_similarity/v1`) and the prompt's version are in the feedback's metadata;
  `mlflow.genai.evaluate` logs the aggregates as `answer_similarity/mean`, `.../variance`, ...
- scored: `value` the score, `rationale` the judge's justification;
- unscored: no value, `error=AssessmentError(error_code=<our UnscoredReason>, ...)`
  (`parse_failure`, `out_of_range`, `judge_error`, `injection_suspected`, `candidate_failed`);
  a row without what the judge grades against: `missing_reference`, `missing_context`,
  `missing_question`, `missing_answer` or `missing_column`, before any call;
- `source`: `LLM_JUDGE`, its id the gateway endpoint(s) asked (`chat`, or `a+b`).

Only public MLflow API here (tests/test_mlflow_internals.py). The scorer is for
`mlflow.genai.evaluate` in this process: it cannot be registered (`Scorer.register`), as MLflow
serializes only built-in and `@scorer` scorers.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import AssessmentError, AssessmentSource, AssessmentSourceType, Feedback
from mlflow.genai.scorers import Scorer
from pydantic import PrivateAttr

from .calls.client import Runtime
from .calls.transport import Transport
from .config.options import load_yaml
from .config.settings import (
    BUILTIN_JUDGES,
    SERVER_GATEWAY_PATH,
    SERVER_GATEWAY_PREFIX,
    EvalConfig,
)
from .errors import ConfigError, ServerError
from .judging.grading import Grader, GradingOptions
from .judging.judges import JudgeDef, Sampling, builtin_judge, load_custom_judges
from .redact import mask
from .types import CONTEXT_ROLE, JUDGE_ERROR, TARGETS_ROLE, Answer, JudgeSpec, Sample, Score

__all__ = ["JudgeScorer", "judge"]

# Where the question, the answer and the reference are in mlflow.genai.evaluate's row, first
# match wins (`expected_response` is the name MLflow's own scorers read).
QUESTION_KEYS = ("question", "inputs", "input", "query", "request")
ANSWER_KEYS = ("answer", "response", "output", "content")
REFERENCE_KEYS = ("expected_response", "ground_truth")
CONTEXT_KEY = "context"
# The environment variable --gateway-url reads (config/settings.py), so that a scorer asks the
# gateway a run would ask.
GATEWAY_ENV = "MLFLOW_DEPLOYMENTS_TARGET"
REPLY_CHARS = 1000  # of an unscored verdict's reply kept in the feedback's metadata


def _default(name: str) -> Any:
    """A run's default for an option: the scorer asks as `mlflow_evaluate.py` does by default."""
    return EvalConfig.__dataclass_fields__[name].default


class _Missing(Exception):
    """The row lacks what the judge needs: an AssessmentError, no call made."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class JudgeScorer(Scorer):
    """One of our judges as an MLflow scorer (build it with `judge`)."""

    metric: str  # the judge's key, `<name>/<version>`: the runner's metric prefix
    prompt_version: str  # judge|layout|quoting|verdict, as a run logs `judge_version/<name>`
    endpoints: tuple[str, ...]  # the gateway endpoints it asks
    gateway_url: str  # masked: fields show in repr and in MLflow's scorer digest

    _grader: Any = PrivateAttr(default=None)  # judging.grading.Grader: our prompt and parser

    def __call__(
        self,
        *,
        inputs: Any = None,
        outputs: Any = None,
        expectations: dict[str, Any] | None = None,
    ) -> Feedback:
        grader: Grader = self._grader
        try:
            sample, answer = _row(grader.judge, inputs, outputs, expectations or {})
        except _Missing as missing:
            error = AssessmentError(error_code=missing.code, error_message=str(missing))
            return self._feedback(error=error)
        try:
            score = grader.grade(sample, answer).combined
        except ServerError as exc:  # a refused key, no such endpoint: the run would stop here
            score = Score.unscored(JUDGE_ERROR, str(exc))
        if score.value is None:
            # Our words for why, else the reply that could not be read (an empty one: neither).
            why = score.justification or score.raw or f"the judge gave no score ({score.reason})"
            reply = {"reply": score.raw[:REPLY_CHARS]} if score.raw else {}
            error = AssessmentError(error_code=str(score.reason), error_message=why)
            return self._feedback(error=error, metadata=reply)
        return self._feedback(value=score.value, rationale=score.justification)

    def _feedback(self, metadata: dict[str, str] | None = None, **fields: Any) -> Feedback:
        return Feedback(
            name=self.name,
            source=AssessmentSource(
                source_type=AssessmentSourceType.LLM_JUDGE, source_id="+".join(self.endpoints)
            ),
            metadata={"metric": self.metric, "prompt_version": self.prompt_version,
                      **(metadata or {})},
            **fields,
        )  # fmt: skip


def judge(
    name: str,
    endpoint: str = "chat",
    gateway_url: str | None = None,
    judges_file: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
) -> JudgeScorer:
    """One of our judges as a scorer for `mlflow.genai.evaluate`.

    Args:
        name: a built-in judge (answer_similarity, answer_correctness, answer_relevance,
            relevance, faithfulness) or one defined in `judges_file`.
        endpoint: the gateway endpoint a built-in judge asks; a judges file's judge asks its
            own `endpoint(s):`, this one only when it names none (as --judge-endpoint).
            `gateway:/NAME`: the endpoint NAME of the AI Gateway inside an `mlflow server`,
            the one at `gateway_url`, else MLFLOW_GATEWAY_URI, else the tracking URI's.
        gateway_url: the MLflow AI Gateway (YAML gateway, OpenAI-compatible route); by default
            as --gateway-url: env MLFLOW_DEPLOYMENTS_TARGET, else http://localhost:5002.
        judges_file: a YAML file of custom judges (examples/judges.yaml shows the format).
        cache_dir: read and write our reply cache there; the runner's (`.mlflow_eval_cache`)
            holds the verdicts a run with the default judge settings got. None: no cache.

    Raises:
        ConfigError (a ValueError): an unknown judge (the message names the known ones), a
            judges file that cannot be read or is invalid.
    """
    if endpoint.startswith(SERVER_GATEWAY_PREFIX):
        server = gateway_url or os.environ.get("MLFLOW_GATEWAY_URI") or mlflow.get_tracking_uri()
        if not server.startswith(("http://", "https://")):
            raise ConfigError(
                f"judge({name!r}, endpoint={endpoint!r}): {SERVER_GATEWAY_PREFIX}NAME is an "
                f"endpoint of the AI Gateway inside an `mlflow server`; {server!r} is none. Pass "
                "gateway_url='http://HOST:PORT', or set MLFLOW_GATEWAY_URI or the tracking URI."
            )
        endpoint = endpoint.removeprefix(SERVER_GATEWAY_PREFIX)
        gateway_url = server.rstrip("/").removesuffix(SERVER_GATEWAY_PATH) + SERVER_GATEWAY_PATH
    with warnings.catch_warnings():
        # Our judges are MLflow's v1 definitions (make_genai_metric, deprecated since 3.4): an
        # expected notice about a call the user did not make.
        warnings.filterwarnings("ignore", message=".*make_genai_metric.*", category=FutureWarning)
        definition = _definition(name, endpoint, judges_file)
    url = (gateway_url or os.environ.get(GATEWAY_ENV) or _default("gateway_url")).rstrip("/")
    upstreams = {} if cache_dir is None else _upstreams(url, definition.endpoints)
    options = GradingOptions(
        gateway_url=url,
        judge_format="text",  # MLflow's `score:` reply, what the runner asks a real judge
        layout=_default("judge_prompt_layout"),
        # As the runner keys a verdict: the gateway and the model behind the endpoint, so that
        # re-pointing an endpoint at another model grades again.
        server_ids={e: f"{url}|{model}|" for e, model in upstreams.items()},
        upstreams=upstreams,
        quiet=True,
    )
    runtime = Runtime(cache_dir=None if cache_dir is None else str(Path(cache_dir).resolve()))
    grader = Grader(definition, options, Transport(runtime))
    scorer = JudgeScorer(
        name=definition.name,
        aggregations=list(definition.aggregations),  # mean, variance, p90: MLflow's names too
        description=f"localeval judge {definition.key} via {'+'.join(definition.endpoints)}",
        # No MLflow timeout: each call has our own (--timeout, bounded retries), and MLflow's
        # runs every row in a new thread, which would open a cache connection per row.
        timeout=0,
        metric=definition.key,
        prompt_version=grader.version,
        endpoints=definition.endpoints,
        gateway_url=mask(url),
    )
    scorer._grader = grader
    return scorer


def _definition(name: str, endpoint: str, judges_file: str | Path | None) -> JudgeDef:
    """The judge resolved as a run resolves it, with the run's default sampling."""
    sampling = Sampling(
        temperature=_default("judge_temperature"), max_tokens=_default("judge_max_tokens")
    )
    if name in BUILTIN_JUDGES:
        spec = JudgeSpec(name, (endpoint,))
        return builtin_judge(spec, sampling.temperature, sampling.max_tokens)
    custom: list[JudgeDef] = []
    if judges_file is not None:
        path = Path(judges_file)
        loaded = load_yaml(path, "Judges file", "Check the judges_file argument.")
        custom = load_custom_judges(path, loaded, endpoint, sampling)
    found = next((d for d in custom if d.name == name), None)
    if found is not None:
        return found
    known = ", ".join([*BUILTIN_JUDGES, *(d.name for d in custom)])
    where = (
        f"built-in and from {judges_file}"
        if judges_file is not None
        else "built-in; define others in a judges file (judges_file=, see examples/judges.yaml)"
    )
    raise ConfigError(f"Unknown judge {name!r}. Known judges ({where}): {known}.")


def _upstreams(url: str, endpoints: tuple[str, ...]) -> dict[str, str]:
    """What answers behind each endpoint, as the gateway says (`?` when it does not)."""
    from .serving import gateway  # only for a cache key: no HTTP call without a cache

    served = gateway.query(url, endpoints)
    return {e: served.identity(e) if served else "?" for e in endpoints}


# ---- mlflow.genai.evaluate's row as our Sample and Answer ----------------------------------


def _text(value: Any) -> str | None:
    """A value as the judge reads it; retrieved passages (a list) one after the other."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return "\n\n".join(str(v) for v in value)
    return str(value)


def _pick(values: dict[str, Any], keys: tuple[str, ...], skip: tuple[str, ...] = ()) -> Any:
    """The first of `keys` in `values`, else the only value (ignoring `skip`); None if neither."""
    for key in keys:
        if values.get(key) is not None:
            return values[key]
    rest = [v for k, v in values.items() if k not in skip]
    return rest[0] if len(rest) == 1 else None


def _question(inputs: Any) -> str | None:
    if isinstance(inputs, dict):
        return _text(_pick(inputs, QUESTION_KEYS, skip=(CONTEXT_KEY,)))
    return _text(inputs)


def _answer(outputs: Any) -> Answer:
    """The answer under test; no output (the app failed) is the candidate's failure."""
    if outputs is None:
        return Answer(None, error="the app produced no output")
    if not isinstance(outputs, dict):
        return Answer(_text(outputs))
    found = _pick(outputs, ANSWER_KEYS)
    if found is None:
        raise _Missing(
            "missing_answer",
            f"no answer in outputs: expected a text or one of the keys {', '.join(ANSWER_KEYS)} "
            f"(got keys {', '.join(map(str, outputs)) or 'none'})",
        )
    return Answer(_text(found))


def _row(
    judge: JudgeDef, inputs: Any, outputs: Any, expectations: dict[str, Any]
) -> tuple[Sample, Answer]:
    """The row as our grading reads it, or _Missing naming what the judge needs and where."""
    question = _question(inputs)
    given = inputs if isinstance(inputs, dict) else {}
    found = (expectations[k] for k in REFERENCE_KEYS if expectations.get(k) is not None)
    reference = _text(next(found, None))
    context = _text(expectations.get(CONTEXT_KEY, given.get(CONTEXT_KEY)))
    if judge.include_input and question is None:
        raise _Missing(
            "missing_question",
            f"{judge.key} grades the answer to a question: give it in inputs under one of "
            f"{', '.join(QUESTION_KEYS)} (got {', '.join(map(str, given)) or 'no keys'})",
        )
    extra = {}
    for column in judge.grading_context_columns:
        if column == TARGETS_ROLE and not reference:
            raise _Missing(
                "missing_reference",
                f"{judge.key} grades against a reference answer: give it as "
                "expectations['expected_response'] (or 'ground_truth')",
            )
        if column == CONTEXT_ROLE and not context:
            raise _Missing(
                "missing_context",
                f"{judge.key} grades against the retrieved context: give it as "
                "expectations['context'] or inputs['context']",
            )
        if column not in (TARGETS_ROLE, CONTEXT_ROLE):
            value = expectations.get(column, given.get(column))
            if value is None:
                raise _Missing(
                    "missing_column",
                    f"{judge.key} grades against {column!r}: give it as "
                    f"expectations[{column!r}] or inputs[{column!r}]",
                )
            extra[column] = _text(value)
    sample = Sample("", question or "", reference, context, metadata=extra)
    return sample, _answer(outputs)
