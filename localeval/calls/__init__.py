"""Calling an LLM, the one way the candidate and the judges do: a small client protocol
(`client`), the HTTP client (`openai_client`: bounded retries, errors said in one line), the
reply cache (`cache`), one client per endpoint behind the cache (`transport`), and rows in
parallel with progress (`pool`, `progress`). Imports `config` and the shared ground only."""

from .client import CallFailed, ChatClient, ChatResponse, Endpoint, Runtime

__all__ = ["CallFailed", "ChatClient", "ChatResponse", "Endpoint", "Runtime"]
