"""What to tell the user to start or load: the local LLM server a URL most likely is (each server's
default port says it), and how to take back an option the way the user gave it."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from ..redact import mask
from ..types import ModelSpec


@dataclass(frozen=True)
class ServerKind:
    """A local LLM server known by its default port; `{model}` in the texts is the model id."""

    name: str
    start: str  # a clause: what to start so that the model answers
    load: str  # a clause: what to do when the server answers but does not serve the model


KINDS = {
    1234: ServerKind(
        "LM Studio",
        "start LM Studio's local server (Developer tab, or 'lms server start') and load {model}",
        "load {model} in LM Studio (Developer tab, or 'lms load {model}')",
    ),
    11434: ServerKind(
        "Ollama",
        "start Ollama ('ollama serve') and pull {model} ('ollama pull {model}')",
        "pull it into Ollama ('ollama pull {model}')",
    ),
    8000: ServerKind(
        "vLLM",
        "start vLLM with it ('vllm serve {model}')",
        "restart vLLM with it ('vllm serve {model}'): vLLM serves the model it was started with",
    ),
    8080: ServerKind(
        "llama.cpp",
        "start llama.cpp's server with it ('llama-server -m MODEL.gguf --alias {model}')",
        "restart llama.cpp's server with it ('llama-server -m MODEL.gguf --alias {model}')",
    ),
}


def kind_of(url: str) -> ServerKind | None:
    """The server a URL most likely points at, by its port; None for any other port."""
    try:
        port = urllib.parse.urlsplit(url).port
    except ValueError:
        return None
    return KINDS.get(port) if port is not None else None


def start_hint(url: str, model: str) -> str:
    """A clause: what to start so that `model` answers at `url`."""
    kind = kind_of(url)
    if kind is None:
        return (
            "start the OpenAI-compatible server (LM Studio, Ollama, vLLM, llama.cpp's server...) "
            f"that serves {model} at {mask(url)}"
        )
    return kind.start.format(model=model)


def load_hint(url: str, model: str) -> str:
    """A clause: what to do when the server at `url` answers but does not serve `model`."""
    kind = kind_of(url)
    if kind is None:
        return f"load {model} on the server at {mask(url)}"
    return kind.load.format(model=model)


def undo(how: str) -> str:
    """A clause that takes back an option given as `how` (`EvalConfig.given`'s words)."""
    if how.startswith("$"):
        return f"unset {how[1:]}"
    key, sep, path = how.partition(" in ")
    if sep:
        return f"remove {key} from {path}"
    return f"drop {how}"


def down_message(down: list[ModelSpec], options: list[str], instead: str) -> str:
    """Candidate servers that do not answer: each with its URL and what to start there; the
    options that set those URLs, in the user's words; `instead`, a clause, the way out."""
    where = ", nor ".join(f"at {mask(s.base_url)} for model {s.id}" for s in down)
    if len(down) == 1:
        todo = start_hint(down[0].base_url, down[0].id)
    else:
        todo = "; ".join(f"for {s.id}, {start_hint(s.base_url, s.id)}" for s in down)
    return (
        f"No OpenAI-compatible server answers {where} (GET /models). "
        f"{todo[0].upper()}{todo[1:]}; or correct {' and '.join(sorted(set(options)))}; or "
        f"{instead}."
    )


def no_server_message(missing: list[ModelSpec], all_missing: bool, embedded: str, how: str) -> str:
    """Models nothing answers for, that the embedded stack cannot stand in for: each with its
    own URL and what to start there; `how` the user named the models (`EvalConfig.given`)."""
    where = " or ".join(f"{m.id} at {mask(m.base_url)}" for m in missing)
    if len(missing) == 1:
        todo = start_hint(missing[0].base_url, missing[0].id)
    else:
        todo = "; ".join(f"for {m.id}, {start_hint(m.base_url, m.id)}" for m in missing)
    if all_missing:
        instead = f"{undo(how)} to evaluate the embedded model instead"
    else:
        instead = f"leave {', '.join(m.id for m in missing)} out of {how}"
    return (
        f"No server answers for model {where}, and the embedded stack serves only {embedded}. "
        f"{todo[0].upper()}{todo[1:]}. Or {instead}."
    )
