"""A persistent cache of chat replies, so a re-run or a resumed run pays only for what is missing.

Replies are written as they arrive (SQLite, WAL mode; the replies that arrive together in one
transaction), so a run killed half way keeps every answer it received: only the calls in flight
are lost. The key covers everything that changes a reply: the server (its URL, or
a stable id for a server we started), the model id, every generation parameter and the messages.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..errors import ConfigError
from .client import ChatClient, ChatResponse, Endpoint, Message

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
        self._queue: list[_Pending] = []  # replies waiting for the next commit
        self._writing = False  # a commit is running
        self._written = threading.Condition()
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
        """Store a reply; it is on disk when this returns (a killed run keeps it).

        Group commit: the replies handed in while a commit runs wait for the next one, which one
        of their threads makes for all of them. One writer at a time, one commit a batch: 16
        threads committing a reply each queued on SQLite's lock, whose busy handler sleeps
        (1 ms, then 2, 5, ...) before it tries again.
        """
        mine = _Pending(key, json.dumps(asdict(replace(response, cached=False))))
        with self._written:
            self._queue.append(mine)
            while not mine.done:
                if self._writing:
                    self._written.wait()
                    continue
                batch, self._queue, self._writing = self._queue, [], True
                self._written.release()
                try:
                    error = self._commit(batch)
                finally:
                    self._written.acquire()
                    self._writing = False
                    for pending in batch:
                        pending.done, pending.error = True, error
                    self._written.notify_all()
        if mine.error is not None:
            raise type(mine.error)(*mine.error.args)

    def _commit(self, batch: list[_Pending]) -> Exception | None:
        """Write the batch in one transaction; the error, for each of the batch's threads."""
        try:
            with self._conn() as conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO replies (key, response) VALUES (?, ?)",
                    [(p.key, p.response) for p in batch],
                )
        except sqlite3.Error as exc:
            return exc
        return None


@dataclass
class _Pending:
    """A reply on its way to disk."""

    key: str
    response: str
    done: bool = False
    error: Exception | None = None


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
