"""The chat clients of a run: one per endpoint, behind the reply cache and an in-run memo.

The memo answers a request already made in this run from memory, cache or not: the logged
pyfunc model that `mlflow.evaluate` calls re-asks the questions the answer phase asked, and gets
the same replies (or the same failures) without a second call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .cache import CachedClient, ReplyCache, cache_key
from .client import CallFailed, ChatClient, ChatResponse, Endpoint, Message, Runtime


class _MemoClient:
    """Remembers every reply and every failure of the run, by the request's cache key."""

    def __init__(self, inner: ChatClient, endpoint: Endpoint, memo: dict) -> None:
        self.inner = inner
        self.endpoint = endpoint
        self.memo = memo

    def complete(self, messages: list[Message]) -> ChatResponse:
        key = cache_key(self.endpoint, messages)
        known = self.memo.get(key)
        if known is None:
            try:
                known = self.inner.complete(messages)
            except CallFailed as exc:
                known = exc
            self.memo[key] = known
        if isinstance(known, CallFailed):
            raise known
        return known


class _OnFirstCall:
    """The HTTP client, built when a reply is not in the cache: a run answered from the cache
    never imports the openai SDK (1.1 s of a 6 s warm run)."""

    def __init__(self, endpoint: Endpoint, connections: Callable[[], Any]) -> None:
        self.endpoint = endpoint
        self._connections = connections
        self._client: ChatClient | None = None
        self._lock = threading.Lock()

    def complete(self, messages: list[Message]) -> ChatResponse:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connections().client(self.endpoint)
        return self._client.complete(messages)


class Transport:
    """Builds each endpoint's client once; owns the reply cache (closed by `close`)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.cache = None if runtime.cache_dir is None else ReplyCache(Path(runtime.cache_dir))
        self._memo: dict[str, ChatResponse | CallFailed] = {}
        self._clients: dict[str, ChatClient] = {}
        self._connections: Any = None  # openai_client.Connections, on the first call
        self._lock = threading.Lock()

    def client(self, endpoint: Endpoint) -> ChatClient:
        """The client for `endpoint`: memo, then cache, then the server."""
        key = repr(endpoint)  # the Endpoint holds a dict: not hashable itself
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = _MemoClient(self._build(endpoint), endpoint, self._memo)
                self._clients[key] = client
        return client

    def _build(self, endpoint: Endpoint) -> ChatClient:
        client: ChatClient = _OnFirstCall(endpoint, self._connect)
        if self.cache is not None:
            client = CachedClient(client, endpoint, self.cache, self.runtime.refresh)
        return client

    def _connect(self) -> Any:
        """The run's HTTP clients, one per server (imported here: see `_OnFirstCall`)."""
        with self._lock:
            if self._connections is None:
                from .openai_client import Connections

                self._connections = Connections(self.runtime.timeout_s, self.runtime.max_retries)
            return self._connections

    def cached(self, endpoint: Endpoint, messages: list[Message]) -> ChatResponse | None:
        """The stored reply for this request, if the run may use one (no call is made)."""
        if self.cache is None or self.runtime.refresh:
            return None
        return self.cache.get(cache_key(endpoint, messages))

    def close(self) -> None:
        if self._connections is not None:
            self._connections.close()
        if self.cache is not None:
            self.cache.close()


_active: Transport | None = None


@contextmanager
def activate(transport: Transport) -> Iterator[Transport]:
    """Make `transport` the one `client_for` uses (for the logged model, inside evaluate)."""
    global _active
    previous, _active = _active, transport
    try:
        yield transport
    finally:
        _active = previous


def client_for(endpoint: Endpoint, runtime: Runtime) -> tuple[ChatClient, Transport | None]:
    """The active run's client for `endpoint`, or a new one (with its own transport to close)."""
    if _active is not None:
        return _active.client(endpoint), None
    own = Transport(runtime)
    return own.client(endpoint), own
