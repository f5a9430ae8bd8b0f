"""The chat client that speaks HTTP: the openai SDK's retrying client, one per server, errors
mapped to ours.

The body is posted as it is and the reply read as plain JSON: the SDK's typed `create` walks
every message through its request transform and builds pydantic objects from the reply, 0.9 ms
of interpreter time per call where this takes 0.5 ms (langchain-openai on top of it: 1.8 ms).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx2
import openai

from .. import workspace
from ..errors import ServerError
from ..redact import mask
from .client import API_KEY_ENV, CallFailed, ChatResponse, Endpoint, Message, api_key


def connect(base_url: str, timeout_s: float, max_retries: int) -> openai.OpenAI:
    """The SDK client of one server: its retry policy and its pool of kept-alive connections."""
    return openai.OpenAI(
        base_url=base_url, api_key=api_key(), timeout=timeout_s, max_retries=max_retries
    )


class OpenAIChatClient:
    """A chat client for one endpoint (model and generation settings) of an OpenAI-compatible
    server.

    Retries (connection errors, timeouts, 408, 409, 429 and 5xx) are the openai SDK's: at most
    `max_retries`, waiting 0.5 s doubling up to a cap of 8 s, less up to 25% jitter; a
    `Retry-After` of up to 120 s is waited instead, a longer one is not retried (openai 3.57,
    `_base_client._calculate_retry_timeout`). `timeout_s` bounds each attempt's connect and each
    read, so a server that says nothing for that long fails the attempt. Any other 4xx fails at
    once with the server's message. What still fails becomes `CallFailed` with its reason.

    Args:
        sdk: the server's SDK client, shared by its endpoints (see `Connections`); by default
            one of its own.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        timeout_s: float,
        max_retries: int,
        sdk: openai.OpenAI | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._sdk = sdk or connect(endpoint.base_url, timeout_s, max_retries)
        self._body = {
            "model": endpoint.model,
            "stream": False,
            "temperature": endpoint.temperature,
            # By this name, not `max_completion_tokens` (what langchain-openai 1.x sends), which
            # llama-cpp-python ignores: a 120-token cap gave 4,082 tokens.
            "max_tokens": endpoint.max_tokens,
            **endpoint.extra_body,
        }

    def complete(self, messages: list[Message]) -> ChatResponse:
        # A server this run started that died fails every call at once, with its name: the
        # retries would only spend seconds per row on a connection that cannot come back.
        if found := workspace.dead():
            raise CallFailed(workspace.died_reason(found))
        started = time.perf_counter()
        body = {**self._body, "messages": messages}
        try:
            return self._post(body, started)
        except CallFailed as exc:
            if exc.server_down and (found := workspace.wait_dead(1.0)):
                raise CallFailed(workspace.died_reason(found)) from None
            raise

    def _post(self, body: dict[str, Any], started: float) -> ChatResponse:
        try:
            response = self._sdk.post("/chat/completions", body=body, cast_to=httpx2.Response)
            reply = _read(response.content)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise ServerError(
                f"{mask(self.endpoint.base_url)} refused the API key ({exc.status_code}): "
                f"{_message(exc)}. Set {API_KEY_ENV} to a key this server accepts."
            ) from None
        except openai.NotFoundError as exc:
            raise ServerError(
                f"{mask(self.endpoint.base_url)} has no model {self.endpoint.model!r} or no chat "
                f"route (404): {_message(exc)}. Check --model / --judge-endpoint and --base-url."
            ) from None
        except openai.APIStatusError as exc:
            # 400 (e.g. a prompt longer than the context) concerns this row only: not retried.
            raise CallFailed(
                f"HTTP {exc.status_code}{_retry_after(exc)}: {_message(exc)}",
                server_down=exc.status_code >= 500,
            ) from None
        except openai.APITimeoutError:
            raise CallFailed(
                f"timeout: no reply within {self.timeout_s:g} s ({self.max_retries + 1} attempts)",
                server_down=True,
            ) from None
        except openai.APIConnectionError as exc:
            raise CallFailed(
                f"connection error ({self.max_retries + 1} attempts): {_root_cause(exc)}",
                server_down=True,
            ) from None
        except openai.APIError as exc:
            raise CallFailed(_message(exc)) from None
        usage = reply.get("usage") or {}
        choice = reply["choices"][0]
        content = choice["message"].get("content")
        return ChatResponse(
            text=content if isinstance(content, str) else str(content or ""),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            latency_s=time.perf_counter() - started,
            finish_reason=choice.get("finish_reason"),
        )


def _read(content: bytes) -> dict[str, Any]:
    """A 200's body as a completion with a first choice, or CallFailed saying why not."""
    try:
        reply = json.loads(content)
    except ValueError as exc:  # a proxy's page, a cut reply
        raise CallFailed(f"unreadable reply: not JSON ({exc})") from None
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if isinstance(choices, list) and not choices:
        raise CallFailed("unreadable reply: the server returned no choices")
    first = choices[0] if isinstance(choices, list) else None
    if not isinstance(first, dict) or not isinstance(first.get("message"), dict):
        # No `choices` key, `"choices": null`, an error object inside a 200.
        what = _message_of(reply) or "no choices[0].message in the reply"
        raise CallFailed(f"unreadable reply: {what}")
    return reply


class Connections:
    """One SDK client per server URL, shared by all its endpoints (models, judge budgets, seeds):
    one pool of kept-alive connections, built on the first call; `close` closes them all."""

    def __init__(self, timeout_s: float, max_retries: int) -> None:
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._sdks: dict[str, openai.OpenAI] = {}
        self._lock = threading.Lock()

    def client(self, endpoint: Endpoint) -> OpenAIChatClient:
        with self._lock:
            sdk = self._sdks.get(endpoint.base_url)
            if sdk is None:
                sdk = connect(endpoint.base_url, self.timeout_s, self.max_retries)
                self._sdks[endpoint.base_url] = sdk
        return OpenAIChatClient(endpoint, self.timeout_s, self.max_retries, sdk)

    def close(self) -> None:
        with self._lock:
            sdks, self._sdks = list(self._sdks.values()), {}
        for sdk in sdks:
            sdk.close()


def _root_cause(exc: BaseException) -> str:
    """The innermost error under the SDK's wrappers (e.g. a reset connection)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _retry_after(exc: Any) -> str:
    """' (Retry-After: 300 s)' when the server asked to wait: the SDK does not wait over 120 s."""
    value = exc.response.headers.get("retry-after") if exc.status_code == 429 else None
    return f" (Retry-After: {value} s)" if value else ""


def _message_of(body: Any) -> str | None:
    """The server's own words in an error body: `error.message`, `detail`, or a text page."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error.strip():
            return error
        if isinstance(body.get("detail"), str):
            return body["detail"]
    if isinstance(body, str) and body.strip():  # a plain-text or HTML error page
        return " ".join(body.split())[:300]
    return None


def _message(exc: Exception) -> str:
    return _message_of(getattr(exc, "body", None)) or str(getattr(exc, "message", exc))
