"""The candidate wrapped as an MLflow pyfunc model, as in the article, done right.

The logged model holds the generation settings (server URL, model id, system prompt, temperature,
max tokens) and runtime options, never an API key: the key is read from the environment at call
time. A password in the server URL is masked too; loaded elsewhere, the model takes the real URL
from `LOCALEVAL_BASE_URL`. Logging needs no LLM call: a signature is given instead of an input
example. Inside a run, the model `mlflow.evaluate` calls is answered from the run's memo (see
`transport`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from ..calls.client import Runtime
from ..calls.pool import map_ordered
from ..calls.transport import client_for
from ..redact import mask
from ..types import ANSWER, ANSWER_COLUMNS, INPUTS, Answer
from .settings import CandidateSettings, ask

DIGEST_TAG = "localeval.candidate_digest"  # what the logged model's settings hash to


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
        settings = self.settings
        if "***@" in settings.base_url and os.environ.get("LOCALEVAL_BASE_URL"):
            settings = replace(settings, base_url=os.environ["LOCALEVAL_BASE_URL"])
        client, own = client_for(settings.endpoint(), self.runtime)
        try:
            answers = map_ordered(
                lambda question: ask(client, settings, question),
                list(model_input[INPUTS]),
                self.runtime.concurrency,
                desc=f"answers ({settings.model})",
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
    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "openai", "pandas")]


@dataclass(frozen=True)
class LoggedCandidate:
    """The candidate's logged model: what mlflow.evaluate loads, what a run names as input."""

    model_id: str
    model_uri: str


def log_candidate(settings: CandidateSettings, runtime: Runtime, experiment_id: str) -> Any:
    """The candidate as a logged pyfunc model: the one logged before with exactly these
    settings, else a new one (0.7 s each; and MLflow's "Agent versions" list one version per
    candidate, not one per run). Log it outside any run (see `tracking.model_run`)."""
    # Inside the run the masked URL finds the answers in the memo: its cache key is masked too.
    settings = replace(settings, base_url=mask(settings.base_url))
    described = {"settings": asdict(settings), "runtime": asdict(runtime),
                 "requirements": pip_requirements()}  # fmt: skip
    if settings.server_id is not None:  # a server we start: a new port each run, same model
        described["settings"]["base_url"] = settings.server_id
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]
    found = mlflow.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string=f"tags.`{DIGEST_TAG}` = '{digest}'",
        max_results=1,
        output_format="list",
    )
    if found and str(found[0].status) in ("READY", "LoggedModelStatus.READY"):
        return LoggedCandidate(found[0].model_id, f"models:/{found[0].model_id}")
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=LocalChatModel(settings, runtime),
        signature=signature(),
        pip_requirements=pip_requirements(),
        metadata={"candidate": asdict(settings)},
        tags={DIGEST_TAG: digest},
    )
    return LoggedCandidate(info.model_id, info.model_uri)
