"""The local LLM under test: its answers, and the same model wrapped as an MLflow pyfunc model.

The logged model holds the generation settings (server URL, model id, system prompt, temperature,
max tokens) and runtime options, never an API key: the key is read from the environment at call
time. Logging needs no LLM call: a signature is given instead of an input example. Inside a run,
the model `mlflow.evaluate` calls is answered from the run's memo (see `transport`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from .client import CallFailed, ChatClient, Endpoint, Runtime, call_of
from .pool import map_ordered
from .transport import Transport, client_for
from .types import ANSWER, ANSWER_COLUMNS, INPUTS, Answer, Call


@dataclass(frozen=True)
class CandidateSettings:
    """What the candidate is: everything that changes its answers."""

    base_url: str
    model: str
    system_prompt: str
    temperature: float
    max_tokens: int
    server_id: str | None = None
    grammar: str | None = None  # a llama.cpp grammar the answer must follow (embedded model)

    def endpoint(self) -> Endpoint:
        extra = {} if self.grammar is None else {"grammar": self.grammar}
        return Endpoint(
            self.base_url,
            self.model,
            self.temperature,
            self.max_tokens,
            extra,
            server_id=self.server_id,
        )

    def messages(self, question: str) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": str(question)},
        ]


def ask(client: ChatClient, settings: CandidateSettings, question: str) -> Answer:
    """One row's answer, or the failure after retries as a value."""
    started = time.time()
    try:
        reply = client.complete(settings.messages(question))
    except CallFailed as exc:
        return Answer(None, exc.reason, Call(started, time.time() - started))
    return Answer(reply.text, None, call_of(reply, started))


def answer_all(
    settings: CandidateSettings,
    questions: Sequence[str],
    transport: Transport,
    concurrency: int,
    quiet: bool = False,
) -> list[Answer]:
    """Every row's answer, `concurrency` calls at a time, in the rows' order."""
    client = transport.client(settings.endpoint())
    return map_ordered(
        lambda question: ask(client, settings, question),
        list(questions),
        concurrency,
        desc=f"answers ({settings.model})",
        quiet=quiet,
    )


def answer_frame(answers: Sequence[Answer]) -> pd.DataFrame:
    """The answers as the pyfunc model's output columns (MLflow keeps them in its table)."""
    rows = []
    for a in answers:
        call = a.call if not a.failed else None
        rows.append(
            {
                ANSWER: a.text or "",
                "candidate_error": a.error or "",
                "latency_s": None if call is None else call.latency_s,
                "prompt_tokens": None if call is None else call.prompt_tokens,
                "completion_tokens": None if call is None else call.completion_tokens,
                "cached": False if call is None else call.cached,
            }
        )
    return pd.DataFrame(rows, columns=[ANSWER, *ANSWER_COLUMNS])


class LocalChatModel(mlflow.pyfunc.PythonModel):
    """Answers each row of the `inputs` column with one chat call to the local server."""

    def __init__(self, settings: CandidateSettings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        client, own = client_for(self.settings.endpoint(), self.runtime)
        try:
            answers = map_ordered(
                lambda question: ask(client, self.settings, question),
                list(model_input[INPUTS]),
                self.runtime.concurrency,
                desc=f"answers ({self.settings.model})",
                # Inside our run every answer is already in the memo: no bar for lookups.
                quiet=self.runtime.quiet or own is None,
            )
        finally:
            if own is not None:
                own.close()
        return answer_frame(answers)


def signature() -> ModelSignature:
    return ModelSignature(
        inputs=Schema([ColSpec("string", INPUTS)]),
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
