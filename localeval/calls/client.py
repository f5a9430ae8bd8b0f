"""One small client protocol for the candidate and the judge: messages in, a response out.

Both talk to an OpenAI-compatible `/v1/chat/completions`: the candidate to the local LLM server,
the judge to the MLflow AI Gateway's OpenAI-compatible route (`model` = the gateway endpoint name).
The client that speaks HTTP is `openai_client` (the openai SDK, imported only by a run that
calls a model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config.settings import EvalConfig
from ..redact import mask
from ..types import Call

Message = dict[str, str]
API_KEY_ENV = "OPENAI_API_KEY"
# Local servers accept any key; the OpenAI client refuses to start without one.
PLACEHOLDER_API_KEY = "local-no-key"


@dataclass(frozen=True)
class ChatResponse:
    """What one chat call gave: the text, the server's token usage and the wall time."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0
    finish_reason: str | None = None
    cached: bool = False


def call_of(reply: ChatResponse, started: float) -> Call:
    """The typed record of one chat call that got a reply."""
    return Call(
        started=started,
        latency_s=reply.latency_s,
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        cached=reply.cached,
        finish_reason=reply.finish_reason,
    )


class CallFailed(Exception):
    """A call that still failed after the bounded retries; the row is recorded as failed."""

    def __init__(self, reason: str, server_down: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        # A failure a dead server gives (no connection, a timeout, a 5xx from the gateway in
        # front of it): worth asking whether a server this run started has died.
        self.server_down = server_down


class ChatClient(Protocol):
    """Anything that answers a list of chat messages."""

    def complete(self, messages: list[Message]) -> ChatResponse: ...


@dataclass(frozen=True)
class Endpoint:
    """Where and how to call a chat model; everything here changes the answer (the cache key)."""

    base_url: str
    model: str
    temperature: float
    max_tokens: int
    extra_body: dict[str, Any] = field(default_factory=dict)
    # What the server is, when its URL does not say it: the servers we start get a new port each
    # run, and a gateway endpoint's name does not say which model answers behind it.
    server_id: str | None = None

    def identity(self) -> dict[str, Any]:
        return {
            # Masked: no password in the cache, and the logged model (which holds the masked URL)
            # finds the run's replies under the same key.
            "base_url": self.server_id or mask(self.base_url.rstrip("/")),
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "extra_body": self.extra_body,
        }


def _default(name: str) -> Any:
    return EvalConfig.__dataclass_fields__[name].default


@dataclass(frozen=True)
class Runtime:
    """How to call a model: concurrency, timeouts, retries and the cache (no effect on answers)."""

    concurrency: int = _default("concurrency")
    timeout_s: float = _default("timeout")
    max_retries: int = _default("max_retries")
    cache_dir: str | None = None  # None: no cache
    refresh: bool = False
    quiet: bool = False

    @classmethod
    def from_config(cls, config: EvalConfig) -> Runtime:
        return cls(
            concurrency=config.concurrency,
            timeout_s=config.timeout,
            max_retries=config.max_retries,
            cache_dir=None if config.no_cache else str(config.cache_dir.resolve()),
            refresh=config.refresh,
            quiet=config.quiet,
        )


def api_key() -> str:
    """The API key from the environment, or a harmless placeholder that local servers accept."""
    return os.environ.get(API_KEY_ENV) or PLACEHOLDER_API_KEY
