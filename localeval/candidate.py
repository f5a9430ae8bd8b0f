"""The local LLM under test, wrapped as an MLflow pyfunc model (as in the article, done right).

The logged model holds the generation settings (server URL, model id, system prompt, temperature,
max tokens) and runtime options, never an API key: the key is read from the environment at call
time. Logging needs no LLM call: a signature is given instead of an input example.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import mlflow.pyfunc
import pandas as pd

from .client import CallFailed, Endpoint, Runtime, make_client
from .pool import map_ordered

ANSWER = "answer"
# Extra output columns; mlflow.evaluate keeps them in the eval table and hands them to metrics.
OUTPUT_COLUMNS = ("candidate_error", "latency_s", "prompt_tokens", "completion_tokens", "cached")


def answer_failed(error: Any) -> bool:
    """Whether a row's `candidate_error` cell says the call failed ("" or a missing cell: no)."""
    return isinstance(error, str) and error != ""


@dataclass(frozen=True)
class CandidateSettings:
    """What the candidate is: everything that changes its answers."""

    base_url: str
    model: str
    system_prompt: str
    temperature: float
    max_tokens: int
    server_id: str | None = None

    def endpoint(self) -> Endpoint:
        return Endpoint(
            self.base_url, self.model, self.temperature, self.max_tokens, server_id=self.server_id
        )


class LocalChatModel(mlflow.pyfunc.PythonModel):
    """Answers each row of the `inputs` column with one chat call to the local server."""

    def __init__(self, settings: CandidateSettings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        client = make_client(self.settings.endpoint(), self.runtime)
        system = {"role": "system", "content": self.settings.system_prompt}

        def answer(question: str) -> dict[str, Any]:
            try:
                reply = client.complete([system, {"role": "user", "content": str(question)}])
            except CallFailed as exc:
                return {
                    ANSWER: "",
                    "candidate_error": exc.reason,
                    "latency_s": None,
                    "prompt_tokens": None,
                    "completion_tokens": None,
                    "cached": False,
                }
            return {
                ANSWER: reply.text,
                "candidate_error": "",
                "latency_s": reply.latency_s,
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "cached": reply.cached,
            }

        rows = map_ordered(
            answer,
            list(model_input["inputs"]),
            self.runtime.concurrency,
            desc=f"answers ({self.settings.model})",
            quiet=self.runtime.quiet,
        )
        return pd.DataFrame(rows, columns=[ANSWER, *OUTPUT_COLUMNS])


def signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "inputs")]),
        outputs=Schema(
            [
                ColSpec("string", ANSWER),
                ColSpec("string", "candidate_error"),
                ColSpec("double", "latency_s", required=False),
                ColSpec("long", "prompt_tokens", required=False),
                ColSpec("long", "completion_tokens", required=False),
                ColSpec("boolean", "cached"),
            ]
        ),
    )


def pip_requirements() -> list[str]:
    # Given explicitly: inferring them loads the model in a subprocess (seconds per run).
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "langchain-openai", "pandas")]


def log_candidate(settings: CandidateSettings, runtime: Runtime) -> Any:
    """Log the candidate as a pyfunc model in the active run; returns MLflow's ModelInfo."""
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=LocalChatModel(settings, runtime),
        signature=signature(),
        pip_requirements=pip_requirements(),
        metadata={"candidate": asdict(settings)},
    )
