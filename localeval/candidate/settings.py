"""The local LLM under test: what it is (its settings) and its answers, one call per row.

`model` wraps the same settings as the MLflow pyfunc model that mlflow.evaluate calls.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..calls.cache import ReplyCache, cache_key
from ..calls.client import CallFailed, ChatClient, Endpoint, call_of
from ..calls.pool import map_ordered
from ..config.slices import CacheOptions, CandidateOptions, DataOptions
from ..dataset import Columns, load_dataset
from ..prompts import ANSWER_GRAMMAR
from ..types import Answer, Call, ModelSpec, Sample
from .conversation import cached_replies, conversations, walk


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


def candidate_settings(options: CandidateOptions, spec: ModelSpec) -> CandidateSettings:
    """The settings of one candidate model of the run."""
    return CandidateSettings(
        spec.base_url,
        spec.served_id,
        options.system_prompt if spec.system_prompt is None else spec.system_prompt,
        options.temperature if spec.temperature is None else spec.temperature,
        options.max_tokens,
        server_id=spec.server_id,
        grammar=ANSWER_GRAMMAR if spec.embedded else None,
    )


def ask(client: ChatClient, settings: CandidateSettings, question: str) -> Answer:
    """One row's answer, or the failure after retries as a value."""
    return ask_messages(client, settings.messages(question))


def ask_messages(client: ChatClient, messages: list[dict[str, str]]) -> Answer:
    """One reply to these messages, or the failure after retries as a value."""
    started = time.time()
    try:
        reply = client.complete(messages)
    except CallFailed as exc:
        return Answer(None, exc.reason, Call(started, time.time() - started))
    return Answer(reply.text, None, call_of(reply, started))


def answer_all(
    settings: CandidateSettings,
    samples: Sequence[Sample],
    client: ChatClient,
    concurrency: int,
    quiet: bool = False,
) -> list[Answer]:
    """Every row's answer in the rows' order, `concurrency` calls at a time: single questions
    each on its own, a conversation's turns one after the other (each with its dialogue)."""
    groups = conversations(samples)
    got = map_ordered(
        lambda group: walk(
            samples, group, settings.system_prompt, lambda m: ask_messages(client, m)
        ),
        groups,
        concurrency,
        desc=f"answers ({settings.model})",
        quiet=quiet,
    )
    answers: list[Answer] = [Answer(None, "not asked")] * len(samples)
    for group, found in zip(groups, got):
        for i, answer in zip(group, found):
            answers[i] = answer
    return answers


def answers_cached(
    cache_options: CacheOptions,
    data: DataOptions,
    candidate: CandidateOptions,
    models: Sequence[ModelSpec],
) -> bool:
    """Whether the reply cache holds every candidate answer the run needs (read before the
    judges are known, so the data is read with the question column only)."""
    if data.answer_col:
        return True  # the answers are in the data
    folder = cache_options.folder.resolve()
    if not cache_options.read or not (folder / "replies.sqlite").exists():
        return False
    every = [candidate_settings(candidate, spec) for spec in models]
    samples = load_dataset(
        data.path, Columns(data.input_col, data.target_col, data.context_col,
                           turns=data.turns_col),
        need_target=False, shard=data.shard,
    ).samples  # fmt: skip
    cache = ReplyCache(folder)
    with contextlib.closing(cache):
        for settings in every:
            endpoint = settings.endpoint()
            found = cached_replies(
                samples, settings.system_prompt, lambda m, e=endpoint: cache.get(cache_key(e, m))
            )
            if found is None:
                return False
    return True
