"""One small client protocol for the candidate and the judge: messages in, a response out.

Both talk to an OpenAI-compatible `/v1/chat/completions`: the candidate to the local LLM server,
the judge to the MLflow AI Gateway's OpenAI-compatible route (`model` = the gateway endpoint name).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import defaults
from .errors import ServerError

Message = dict[str, str]


@dataclass(frozen=True)
class ChatResponse:
    """What one chat call gave: the text, the server's token usage and the wall time."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0
    finish_reason: str | None = None
    cached: bool = False


class CallFailed(Exception):
    """A call that still failed after the bounded retries; the row is recorded as failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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

    def identity(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url.rstrip("/"),
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "extra_body": self.extra_body,
        }


def api_key() -> str:
    """The API key from the environment, or a harmless placeholder that local servers accept."""
    return os.environ.get(defaults.API_KEY_ENV) or defaults.PLACEHOLDER_API_KEY


class OpenAIChatClient:
    """A chat client on langchain-openai's ChatOpenAI.

    Retries (connection errors, timeouts, 429 with Retry-After, 5xx) are the openai SDK's capped
    exponential backoff with jitter, bounded by `max_retries`.
    """

    def __init__(self, endpoint: Endpoint, timeout_s: float, max_retries: int) -> None:
        from langchain_openai import ChatOpenAI

        self.endpoint = endpoint
        self._llm = ChatOpenAI(
            model=endpoint.model,
            base_url=endpoint.base_url,
            api_key=api_key(),
            temperature=endpoint.temperature,
            timeout=timeout_s,
            max_retries=max_retries,
            # langchain-openai 1.x sends `max_tokens` as `max_completion_tokens`, which
            # llama-cpp-python ignores (a 120-token cap gave 4,082 tokens): send it by its old name.
            extra_body={"max_tokens": endpoint.max_tokens, **endpoint.extra_body},
        )

    def complete(self, messages: list[Message]) -> ChatResponse:
        import openai

        started = time.perf_counter()
        try:
            reply = self._llm.invoke(messages)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise ServerError(
                f"{self.endpoint.base_url} refused the API key ({exc.status_code}): "
                f"{_message(exc)}. Set {defaults.API_KEY_ENV} to a key this server accepts."
            ) from None
        except openai.NotFoundError as exc:
            raise ServerError(
                f"{self.endpoint.base_url} has no model {self.endpoint.model!r} or no chat route "
                f"(404): {_message(exc)}. Check --model / --judge-endpoint and --base-url."
            ) from None
        except openai.APIStatusError as exc:
            # 400 (e.g. a prompt longer than the context) concerns this row only: not retried.
            raise CallFailed(f"HTTP {exc.status_code}: {_message(exc)}") from None
        except openai.APITimeoutError:
            raise CallFailed("timeout: no reply within the --timeout after retries") from None
        except openai.APIConnectionError as exc:
            raise CallFailed(f"connection error after retries: {exc.__cause__ or exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            # The SDK or langchain could not read the reply (invalid JSON, no choices).
            raise CallFailed(f"unreadable reply: {exc}") from None
        latency = time.perf_counter() - started
        usage = reply.usage_metadata or {}
        text = reply.content if isinstance(reply.content, str) else str(reply.content)
        return ChatResponse(
            text=text,
            prompt_tokens=usage.get("input_tokens"),
            completion_tokens=usage.get("output_tokens"),
            latency_s=latency,
            finish_reason=reply.response_metadata.get("finish_reason"),
        )


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(body.get("detail"), str):
            return body["detail"]
    return str(getattr(exc, "message", exc))
