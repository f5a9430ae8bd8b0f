"""A small scripted OpenAI-compatible server for tests: real HTTP on loopback.

It answers `GET /v1/models` and `POST /v1/chat/completions`, replays scripted replies (or a
default one), and records every request body so tests can assert what was really sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = str | dict[str, Any] | Callable[[dict[str, Any]], "str | dict[str, Any]"]


@dataclass
class Fault:
    """A scripted failure: an HTTP status with a body, a hang, a reset or a raw body."""

    status: int = 500
    body: str = '{"error": {"message": "scripted failure"}}'
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0
    reset: bool = False


class FakeOpenAI:
    """Scripted OpenAI-compatible chat server.

    Args:
        models: ids listed by `GET /v1/models`.
        gateway_endpoints: also play the gateway, listing these endpoints.
        reply: default reply for chat requests: text, a Fault, or a function of the request body.
        latency_s: sleep before answering each chat request.
    """

    def __init__(
        self,
        models: tuple[str, ...] = ("fake-model",),
        reply: Reply | Fault = "A fake answer.",
        latency_s: float = 0.0,
        gateway_endpoints: dict[str, str] | None = None,
    ) -> None:
        self.models = list(models)
        # When set, it also answers like an MLflow AI Gateway: GET /api/2.0/endpoints/ lists these
        # (name -> endpoint_type) and chat calls name the endpoint in `model`.
        self.gateway_endpoints = gateway_endpoints
        self.reply = reply
        self.latency_s = latency_s
        self.script: list[Reply | Fault] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

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

    @property
    def chat_calls(self) -> int:
        with self._lock:
            return len(self.requests)

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
            reply = self.script.pop(0) if self.script else self.reply
        if callable(reply) and not isinstance(reply, Fault):
            reply = reply(body)
        return reply

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

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

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/api/2.0/endpoints" and fake.gateway_endpoints:
                    data = [
                        {"name": n, "endpoint_type": t} for n, t in fake.gateway_endpoints.items()
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
                with fake._lock:
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                reply = fake._next_reply(body)
                if fake.latency_s:
                    time.sleep(fake.latency_s)
                if isinstance(reply, Fault):
                    if reply.hang_s:
                        time.sleep(reply.hang_s)
                    if reply.reset:
                        self.connection.shutdown(2)
                        self.close_connection = True
                        return
                    self._send(reply.status, reply.body, reply.headers)
                    return
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

        return Handler
