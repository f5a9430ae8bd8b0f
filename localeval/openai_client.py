"""The chat client that speaks HTTP: langchain-openai's ChatOpenAI, errors mapped to ours."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
from langchain_openai import ChatOpenAI

from .client import API_KEY_ENV, CallFailed, ChatResponse, Endpoint, Message, api_key
from .errors import ServerError
from .redact import mask


class OpenAIChatClient:
    """A chat client on langchain-openai's ChatOpenAI.

    Retries (connection errors, timeouts, 408, 409, 429 and 5xx) are the openai SDK's: at most
    `max_retries`, waiting 0.5 s doubling up to a cap of 8 s, less up to 25% jitter; a
    `Retry-After` of up to 120 s is waited instead, a longer one is not retried (openai 3.57,
    `_base_client._calculate_retry_timeout`). `timeout_s` bounds each attempt's connect and each
    read, so a server that says nothing for that long fails the attempt. Any other 4xx fails at
    once with the server's message. What still fails becomes `CallFailed` with its reason.
    """

    def __init__(self, endpoint: Endpoint, timeout_s: float, max_retries: int) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.max_retries = max_retries
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
        started = time.perf_counter()
        try:
            reply = self._llm.invoke(messages)
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
                f"HTTP {exc.status_code}{_retry_after(exc)}: {_message(exc)}"
            ) from None
        except openai.APITimeoutError:
            raise CallFailed(
                f"timeout: no reply within {self.timeout_s:g} s ({self.max_retries + 1} attempts)"
            ) from None
        except openai.APIConnectionError as exc:
            raise CallFailed(
                f"connection error ({self.max_retries + 1} attempts): {_root_cause(exc)}"
            ) from None
        except openai.APIError as exc:
            # langchain-openai re-raises a status error whose text says "exceeds the context
            # window" as a bare APIError (OpenAIAPIContextOverflowError), without the status.
            status = getattr(exc.__cause__, "status_code", None)
            raise CallFailed(
                f"HTTP {status}: {_message(exc)}" if status else _message(exc)
            ) from None
        except json.JSONDecodeError as exc:
            # The SDK raises this for a 200 whose body is not JSON (a proxy page, a cut reply).
            raise CallFailed(f"unreadable reply: not JSON ({exc})") from None
        except IndexError:
            # langchain-openai indexes generations[0]: a 200 with `"choices": []` lands here.
            raise CallFailed("unreadable reply: the server returned no choices") from None
        except (ValueError, KeyError, TypeError) as exc:
            # langchain could not read the reply: no `choices` key, `"choices": null`, an error
            # object inside a 200.
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


def _root_cause(exc: BaseException) -> str:
    """The innermost error under the SDK's and langchain's wrappers (e.g. a reset connection)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _retry_after(exc: Any) -> str:
    """' (Retry-After: 300 s)' when the server asked to wait: the SDK does not wait over 120 s."""
    value = exc.response.headers.get("retry-after") if exc.status_code == 429 else None
    return f" (Retry-After: {value} s)" if value else ""


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(body.get("detail"), str):
            return body["detail"]
    if isinstance(body, str) and body.strip():  # a plain-text or HTML error page
        return " ".join(body.split())[:300]
    return str(getattr(exc, "message", exc))
