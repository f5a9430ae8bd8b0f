"""A persistent cache of chat replies, so a re-run or a resumed run pays only for what is missing.

Replies are written as they arrive (one SQLite row each, WAL mode), so a run killed half way keeps
every answer it received. The key covers everything that changes a reply: the server (its URL, or
a stable id for a server we started), the model id, every generation parameter and the messages.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import asdict, fields, replace
from pathlib import Path

from .client import ChatClient, ChatResponse, Endpoint, Message
from .errors import ConfigError

_SCHEMA = """CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    response TEXT NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now'))
)"""


def cache_key(endpoint: Endpoint, messages: list[Message]) -> str:
    payload = json.dumps({"endpoint": endpoint.identity(), "messages": messages}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class ReplyCache:
    """SQLite store of replies keyed by request; safe for threads and for several processes."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "replies.sqlite"
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []  # every thread's, closed by close()
        self._lock = threading.Lock()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"The reply cache {self.path} cannot be used ({exc}). Delete it, pick another "
                "--cache-dir, or run with --no-cache."
            ) from None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # One connection per thread; the 30 s busy timeout covers other writers (threads and
            # processes) holding the write lock for one short INSERT each.
            conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            # In WAL mode NORMAL still survives a killed process (only power loss can drop the
            # last commits) and saves an fsync per reply.
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection (a closed cache opens new ones if used again)."""
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()

    def get(self, key: str) -> ChatResponse | None:
        row = self._conn().execute("SELECT response FROM replies WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        stored = json.loads(row[0])
        known = {f.name for f in fields(ChatResponse)}  # a newer version may store more fields
        return replace(ChatResponse(**{k: v for k, v in stored.items() if k in known}), cached=True)

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def put(self, key: str, response: ChatResponse) -> None:
        with self._conn() as conn:  # commits at once: a killed run keeps this reply
            conn.execute(
                "INSERT OR REPLACE INTO replies (key, response) VALUES (?, ?)",
                (key, json.dumps(asdict(replace(response, cached=False)))),
            )


class CachedClient:
    """A ChatClient that answers from the cache when it can and stores what the server says.

    Args:
        refresh: ignore stored replies (but store the new ones).
    """

    def __init__(
        self, inner: ChatClient, endpoint: Endpoint, cache: ReplyCache, refresh: bool = False
    ) -> None:
        self.inner = inner
        self.endpoint = endpoint
        self.cache = cache
        self.refresh = refresh

    def complete(self, messages: list[Message]) -> ChatResponse:
        key = cache_key(self.endpoint, messages)
        if not self.refresh and (hit := self.cache.get(key)) is not None:
            return hit
        response = self.inner.complete(messages)
        self.cache.put(key, response)
        return response
