"""A small scripted OpenAI-compatible server for tests: real HTTP on loopback.

It answers `GET /v1/models` and `POST /v1/chat/completions`, replays scripted replies (or a
default one), and records every request body so tests can assert what was really sent. Faults
(5xx, 429 with Retry-After, a hang, a reset connection, a 200 with a broken body, a context-length
400) can be scripted for the next calls, or for the calls whose messages contain a given text.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from localeval.serving.preflight import PROBE

Reply = str | dict[str, Any] | Callable[[dict[str, Any]], "str | dict[str, Any] | Fault"]

# llama.cpp's server says this when the prompt does not fit (HTTP 400, type exceed_context_size).
LLAMA_CPP_CONTEXT_ERROR = {
    "error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
    }
}
# OpenAI and vLLM say this instead.
OPENAI_CONTEXT_ERROR = {
    "error": {
        "message": "This model's maximum context length is 4096 tokens. However, your messages "
        "resulted in 5000 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}


@dataclass
class Fault:
    """A scripted failure: an HTTP status with a body, a hang, a reset or a raw body."""

    status: int = 500
    body: str = '{"error": {"message": "scripted failure"}}'
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0
    reset: bool = False

    @classmethod
    def server_error(cls, status: int = 500, message: str = "scripted failure") -> Fault:
        return cls(status, json.dumps({"error": {"message": message}}))

    @classmethod
    def rate_limited(cls, retry_after_s: float) -> Fault:
        """A 429 with a `Retry-After` header (seconds)."""
        body = json.dumps({"error": {"message": "rate limited", "type": "rate_limit_error"}})
        return cls(429, body, {"Retry-After": f"{retry_after_s:g}"})

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Say nothing for `seconds`, then answer 200 with a valid reply (if anyone still waits)."""
        return cls(200, "", hang_s=seconds)

    @classmethod
    def connection_reset(cls) -> Fault:
        """Read the request, then reset the TCP connection without answering."""
        return cls(reset=True)

    @classmethod
    def invalid_json(cls) -> Fault:
        """HTTP 200 with a body that is not JSON (a proxy's error page, a truncated reply)."""
        return cls(200, '{"id": "chatcmpl-fake", "choices": [{"message": ')

    @classmethod
    def empty_choices(cls) -> Fault:
        """HTTP 200 with a well-formed completion that has no choices."""
        body = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0}
        return cls(200, json.dumps({**body, "model": "fake", "choices": []}))

    @classmethod
    def context_length(cls, style: str = "llama.cpp") -> Fault:
        """HTTP 400: the prompt does not fit the context, as llama.cpp or OpenAI say it."""
        body = LLAMA_CPP_CONTEXT_ERROR if style == "llama.cpp" else OPENAI_CONTEXT_ERROR
        return cls(400, json.dumps(body))


@dataclass
class _Rule:
    needle: str
    model: str | None
    replies: list[Reply | Fault]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, killed process) leaves a broken pipe behind: expected.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeOpenAI:
    """Scripted OpenAI-compatible chat server.

    Args:
        models: ids listed by `GET /v1/models`.
        gateway_endpoints: also play the gateway, listing these endpoints.
        reply: default reply for chat requests: text, a Fault, or a function of the request body
            (which may return a Fault).
        latency_s: sleep before answering each chat request.
        slots: serve at most this many chat requests at a time, as a local server with that
            many slots: another request waits for a free slot (None: no limit).
        gateway_routes: when playing the gateway, also these traffic-split routes (name ->
            destination endpoints), served by MLflow 3's route API as the real gateway does
            (not listed among the endpoints).

    The preflight's one-token test calls (`localeval.serving.preflight.PROBE`) are answered with
    `probe_reply` and recorded in `probes` only: not in `requests`, and no scripted reply is
    spent on them.
    """

    def __init__(
        self,
        models: tuple[str, ...] = ("fake-model",),
        reply: Reply | Fault = "A fake answer.",
        latency_s: float = 0.0,
        gateway_endpoints: dict[str, str] | None = None,
        slots: int | None = None,
        gateway_routes: dict[str, list[str]] | None = None,
    ) -> None:
        self.models = list(models)
        # When set, it also answers like an MLflow AI Gateway: GET /api/2.0/endpoints/ lists these
        # (name -> endpoint_type) and chat calls name the endpoint in `model`.
        self.gateway_endpoints = gateway_endpoints
        self.gateway_models: dict[str, str] = {}  # endpoint -> upstream model name it reports
        self.gateway_routes = gateway_routes or {}
        self.probe_reply: Reply | Fault = "OK"
        self.probes: list[dict[str, Any]] = []
        self._slots = None if slots is None else threading.Semaphore(slots)
        # (start, end) of serving each chat request, time.monotonic(), once a slot was free.
        self.spans: list[tuple[float, float, dict[str, Any]]] = []
        self.reply = reply
        self.latency_s = latency_s
        self.script: list[Reply | Fault] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.times: list[float] = []  # time.monotonic() at each chat request, as `requests`
        self.answered = 0  # chat requests answered with a complete 200 reply
        self.in_flight = 0
        self.max_in_flight = 0  # the most chat requests being served at the same time
        self.max_in_flight_by_model: dict[str, int] = {}  # the same, per `model` in the request
        self._in_flight_by_model: dict[str, int] = {}
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        # serve_forever checks for shutdown() every poll_interval (0.5 s by default): that
        # was half a second of teardown for each of ~170 tests that start a fake.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")

    def calls_for(self, model: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r.get("model") == model]

    def calls_with(self, needle: str, model: str | None = None) -> list[dict[str, Any]]:
        """The chat requests whose messages contain `needle` (and, if given, name `model`)."""
        with self._lock:
            return [r for r in self.requests if _matches(r, needle, model)]

    @property
    def chat_calls(self) -> int:
        with self._lock:
            return len(self.requests)

    def script_for(self, needle: str, *replies: Reply | Fault, model: str | None = None) -> None:
        """Answer the next calls whose messages contain `needle` with `replies`, in order.

        Such rules are looked at before `script` and `reply`; `model` narrows them to the
        candidate's model id or a judge endpoint's name.
        """
        with self._lock:
            self._rules.append(_Rule(needle, model, list(replies)))

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_reply(self, body: dict[str, Any]) -> Reply | Fault:
        with self._lock:
            self.requests.append(body)
            self.times.append(time.monotonic())
            rule = next(
                (r for r in self._rules if r.replies and _matches(body, r.needle, r.model)), None
            )
            if rule is not None:
                reply = rule.replies.pop(0)
            else:
                reply = self.script.pop(0) if self.script else self.reply
        if callable(reply) and not isinstance(reply, Fault):
            reply = reply(body)
        return reply

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, the body waited for the
            # client's delayed ACK, 40+ ms a call on Linux loopback (real servers set NODELAY).
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _reset(self) -> None:
                # SO_LINGER 0: close() sends a TCP RST, the client reads "connection reset by peer".
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
                self.close_connection = True

            def do_GET(self) -> None:
                path = self.path.rstrip("/")
                route = path.removeprefix("/api/3.0/gateway/route/")
                if fake.gateway_endpoints and route != path:
                    if route not in fake.gateway_routes:
                        self._send(404, '{"detail": "The route is not present"}')
                        return
                    destinations = [
                        {"name": d, "traffic_percentage": 100 // len(fake.gateway_routes[route])}
                        for d in fake.gateway_routes[route]
                    ]
                    data = {"name": route, "task_type": "llm/v1/chat", "destinations": destinations}
                    self._send(200, json.dumps({**data, "routing_strategy": "TRAFFIC_SPLIT"}))
                elif path == "/api/2.0/endpoints" and fake.gateway_endpoints:
                    data = [
                        {
                            "name": n,
                            "endpoint_type": t,
                            "model": {"provider": "openai", "name": fake.gateway_models.get(n, n)},
                        }
                        for n, t in fake.gateway_endpoints.items()
                    ]
                    self._send(200, json.dumps({"endpoints": data}))
                elif self.path.rstrip("/").endswith("/models"):
                    data = [{"id": m, "object": "model", "owned_by": "fake"} for m in fake.models]
                    self._send(200, json.dumps({"object": "list", "data": data}))
                else:
                    self._send(404, '{"error": {"message": "not found"}}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, '{"error": {"message": "not found"}}')
                    return
                body = json.loads(raw)
                model = str(body.get("model", ""))
                if body.get("messages") == PROBE["messages"] and body.get("max_tokens") == 1:
                    with fake._lock:
                        fake.probes.append(body)
                    reply = fake.probe_reply
                    if callable(reply) and not isinstance(reply, Fault):
                        reply = reply(body)
                    self._answer(body, reply)
                    return
                if fake._slots is not None:
                    fake._slots.acquire()
                try:
                    self._serve(body, model)
                finally:
                    if fake._slots is not None:
                        fake._slots.release()

            def _serve(self, body: dict[str, Any], model: str) -> None:
                started = time.monotonic()
                with fake._lock:
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    now = fake._in_flight_by_model.get(model, 0) + 1
                    fake._in_flight_by_model[model] = now
                    most = fake.max_in_flight_by_model.get(model, 0)
                    fake.max_in_flight_by_model[model] = max(most, now)
                try:
                    self._answer(body)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
                        fake._in_flight_by_model[model] -= 1
                        fake.spans.append((started, time.monotonic(), body))

            def _answer(self, body: dict[str, Any], probe: Reply | Fault | None = None) -> None:
                if probe is None:
                    reply = fake._next_reply(body)
                    if fake.latency_s:
                        time.sleep(fake.latency_s)
                else:
                    reply = probe
                if isinstance(reply, Fault):
                    if reply.hang_s:
                        time.sleep(reply.hang_s)
                    if reply.reset:
                        self._reset()
                        return
                    if reply.status != 200 or reply.body:
                        self._send(reply.status, reply.body, reply.headers)
                        return
                    reply = "A late answer."
                if isinstance(reply, str):
                    reply = {"content": reply}
                content = reply.get("content", "")
                prompt_tokens = sum(
                    len(str(m.get("content", "")).split()) for m in body["messages"]
                )
                completion_tokens = len(content.split())
                payload = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", ""),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": reply.get("finish_reason", "stop"),
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                }
                self._send(200, json.dumps(payload))
                with fake._lock:
                    fake.answered += 1

        return Handler


def _matches(body: dict[str, Any], needle: str, model: str | None) -> bool:
    if model is not None and body.get("model") != model:
        return False
    return any(needle in str(m.get("content", "")) for m in body.get("messages", []))
