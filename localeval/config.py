"""The run's configuration: parsed once at the edge into a frozen dataclass.

Precedence, highest first: command-line flag > config file (--config) > environment variable >
built-in default (defaults.py).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import defaults
from .errors import EXIT_CODES_HELP, ConfigError


@dataclass(frozen=True)
class ModelSpec:
    """A candidate model: its id on the server and the server's OpenAI-compatible base URL."""

    id: str
    base_url: str
    server_id: str | None = None  # a stable name for a server we started (the cache key)


@dataclass(frozen=True)
class JudgeSpec:
    """A built-in judge by name, the gateway endpoint(s) it asks, and its own sampling."""

    name: str
    endpoints: tuple[str, ...]
    temperature: float | None = None  # None: --judge-temperature
    max_tokens: int | None = None  # None: --judge-max-tokens

    @property
    def endpoint(self) -> str:
        return self.endpoints[0]


@dataclass(frozen=True)
class Threshold:
    """A --fail-under gate: the run fails when `metric` is below `value` (or missing)."""

    metric: str
    value: float


@dataclass(frozen=True)
class EvalConfig:
    """Everything one invocation needs, resolved from flags, config file, environment, defaults."""

    data: Path
    models: tuple[ModelSpec, ...]
    model_given: bool  # False: the default id, which the embedded stack replaces with its own
    system_prompt: str
    temperature: float
    max_tokens: int
    gateway_url: str
    gateway_config: Path
    judges: tuple[JudgeSpec, ...]
    judge_endpoint: str
    judge_temperature: float
    judge_max_tokens: int
    judges_file: Path | None
    judge_format: str
    judge_repeats: int
    fail_under: tuple[Threshold, ...]
    tracking_uri: str | None
    experiment: str
    stack: str
    concurrency: int
    timeout: float
    max_retries: int
    cache_dir: Path
    no_cache: bool
    refresh: bool
    quiet: bool
    input_col: str = "inputs"
    target_col: str = "ground_truth"
    context_col: str = "context"
    report: Path | None = None  # --report: the HTML report, written here too
    output: Path | None = None  # --output: per-row .jsonl/.csv, aggregates beside it
    extra: dict[str, Any] = field(default_factory=dict)

    def loggable(self) -> dict[str, Any]:
        """The resolved config as flat params for MLflow (no secrets are ever held here)."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if key in ("extra", "model_given"):
                continue
            if key == "models":
                value = ",".join(f"{m['id']}@{m['base_url']}" for m in value)
            elif key == "judges":
                value = ",".join(f"{j['name']}@{'+'.join(j['endpoints'])}" for j in value)
            elif key == "fail_under":
                value = ",".join(f"{t['metric']}={t['value']}" for t in value)
            out[key] = str(value)
        return out


@dataclass(frozen=True)
class _Option:
    name: str
    flag: str
    help: str
    default: Any
    convert: Callable[[str], Any] = str
    env: str | None = None
    repeat: bool = False
    switch: bool = False
    metavar: str | None = None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


def _temperature(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 2:
        raise ValueError("must be between 0 and 2")
    return value


def _stack(text: str) -> str:
    if text not in defaults.STACK_CHOICES:
        raise ValueError(f"must be one of {', '.join(defaults.STACK_CHOICES)}")
    return text


def _output_path(text: str) -> Path:
    from .export import row_format

    path = Path(text)
    row_format(path)
    return path


def _judge_format(text: str) -> str:
    if text not in defaults.JUDGE_FORMATS:
        raise ValueError(f"must be one of {', '.join(defaults.JUDGE_FORMATS)}")
    return text


def _bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    if str(text).lower() in ("1", "true", "yes", "on"):
        return True
    if str(text).lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


OPTIONS = (
    _Option(
        "data",
        "--data",
        "dataset file (.csv, .json, .jsonl, .parquet)",
        defaults.DATA,
        Path,
        env="EVAL_DATA",
        metavar="PATH",
    ),
    _Option(
        "model",
        "--model",
        "candidate model id, repeatable; ID@URL gives it its own server",
        defaults.MODEL,
        env="EVAL_MODEL",
        repeat=True,
        metavar="ID",
    ),
    _Option(
        "base_url",
        "--base-url",
        "OpenAI-compatible base URL of the candidate server",
        defaults.BASE_URL,
        env="OPENAI_BASE_URL",
        metavar="URL",
    ),
    _Option(
        "system_prompt",
        "--system-prompt",
        "system prompt sent before each question",
        defaults.SYSTEM_PROMPT,
        metavar="TEXT",
    ),
    _Option(
        "temperature",
        "--temperature",
        "candidate sampling temperature",
        defaults.TEMPERATURE,
        _temperature,
    ),
    _Option(
        "max_tokens",
        "--max-tokens",
        "candidate answer limit, sent as max_tokens",
        defaults.MAX_TOKENS,
        _positive_int,
        metavar="N",
    ),
    _Option(
        "gateway_url",
        "--gateway-url",
        "MLflow AI Gateway URL",
        defaults.GATEWAY_URL,
        env="MLFLOW_DEPLOYMENTS_TARGET",
        metavar="URL",
    ),
    _Option(
        "gateway_config",
        "--gateway-config",
        "gateway config for a gateway we start",
        defaults.GATEWAY_CONFIG,
        Path,
        metavar="PATH",
    ),
    _Option(
        "judge",
        "--judge",
        "judge metric, repeatable or comma-separated: answer_similarity, answer_correctness, "
        "answer_relevance, relevance, faithfulness; NAME@EP routes it to gateway endpoint EP, "
        "NAME@EP1+EP2 asks several judges",
        ",".join(defaults.JUDGES),
        repeat=True,
        metavar="NAME",
    ),
    _Option(
        "judges_file",
        "--judges-file",
        "YAML file of custom judges (see examples/judges.yaml)",
        None,
        Path,
        metavar="PATH",
    ),
    _Option(
        "judge_format",
        "--judge-format",
        "text: MLflow's 'score:' reply; json: ask for a JSON verdict with response_format "
        "json_object (falls back to text if the server refuses it); auto: json when the judge "
        "is the embedded model, else text",
        defaults.JUDGE_FORMAT,
        _judge_format,
    ),
    _Option(
        "judge_repeats",
        "--judge-repeats",
        "judge each row K times (self-consistency)",
        defaults.JUDGE_REPEATS,
        _positive_int,
        metavar="K",
    ),
    _Option(
        "fail_under",
        "--fail-under",
        "CI gate, repeatable: exit 4 when METRIC (e.g. answer_similarity/v1/mean, or "
        ".../ci_low for the interval's lower bound) is below VALUE or missing",
        None,
        repeat=True,
        metavar="METRIC=VALUE",
    ),
    _Option(
        "judge_endpoint",
        "--judge-endpoint",
        "gateway endpoint for judges without @ENDPOINT",
        defaults.JUDGE_ENDPOINT,
        metavar="NAME",
    ),
    _Option(
        "judge_temperature",
        "--judge-temperature",
        "judge sampling temperature",
        defaults.JUDGE_TEMPERATURE,
        _temperature,
    ),
    _Option(
        "judge_max_tokens",
        "--judge-max-tokens",
        "judge reply limit, sent as max_tokens",
        defaults.JUDGE_MAX_TOKENS,
        _positive_int,
        metavar="N",
    ),
    _Option(
        "tracking_uri",
        "--tracking-uri",
        f"MLflow tracking URI (default: sqlite:///{defaults.TRACKING_DB} in the working folder)",
        None,
        env="MLFLOW_TRACKING_URI",
        metavar="URI",
    ),
    _Option(
        "experiment",
        "--experiment",
        "MLflow experiment name",
        defaults.EXPERIMENT,
        env="MLFLOW_EXPERIMENT_NAME",
        metavar="NAME",
    ),
    _Option(
        "report",
        "--report",
        "also write the HTML report (logged with the run as report.html) to PATH",
        None,
        Path,
        metavar="PATH",
    ),
    _Option(
        "output",
        "--output",
        "write per-row results to PATH (.jsonl or .csv) and the aggregates beside it as "
        "NAME.aggregates.json",
        None,
        _output_path,
        metavar="PATH",
    ),
    _Option(
        "stack",
        "--stack",
        "auto: use what answers, start what is missing; external: start "
        "nothing; embedded: start our own llama.cpp server and gateway",
        defaults.STACK,
        _stack,
    ),
    _Option(
        "concurrency",
        "--concurrency",
        "parallel LLM calls",
        defaults.CONCURRENCY,
        _positive_int,
        metavar="N",
    ),
    _Option(
        "timeout",
        "--timeout",
        "seconds to wait for one LLM reply",
        defaults.TIMEOUT_S,
        _positive_float,
        metavar="S",
    ),
    _Option(
        "max_retries",
        "--max-retries",
        "retries of a failed LLM call (connection, timeout, 429, 5xx)",
        defaults.MAX_RETRIES,
        _non_negative_int,
        metavar="N",
    ),
    _Option(
        "cache_dir",
        "--cache-dir",
        "where replies are cached",
        Path(defaults.CACHE_DIR),
        Path,
        env="EVAL_CACHE_DIR",
        metavar="PATH",
    ),
    _Option(
        "no_cache", "--no-cache", "neither read nor write the cache", False, _bool, switch=True
    ),
    _Option(
        "refresh",
        "--refresh",
        "ignore cached replies (new replies are still stored)",
        False,
        _bool,
        switch=True,
    ),
    _Option("quiet", "--quiet", "no progress bars", False, _bool, switch=True),
    _Option(
        "input_col", "--input-col", "data column holding the question", "inputs", metavar="COL"
    ),
    _Option(
        "target_col",
        "--target-col",
        "data column holding the expected answer",
        "ground_truth",
        metavar="COL",
    ),
    _Option(
        "context_col",
        "--context-col",
        "data column holding the retrieval context",
        "context",
        metavar="COL",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlflow_evaluate.py",
        description="Evaluate a local OpenAI-compatible LLM with LLM-as-a-judge metrics in MLflow; "
        "the judge runs behind a self-hosted MLflow AI Gateway.",
        epilog="Precedence: command-line flag > --config file > environment variable > default.\n"
        "API keys come only from the environment (OPENAI_API_KEY; a placeholder for local "
        "servers).\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="YAML file holding any of the options below (keys as flag names)",
    )
    for opt in OPTIONS:
        env = f", env {opt.env}" if opt.env else ""
        help_text = f"{opt.help} (default: {opt.default}{env})"
        if opt.switch:
            parser.add_argument(
                opt.flag,
                dest=opt.name,
                action="store_const",
                const=True,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(
                opt.flag,
                dest=opt.name,
                default=None,
                metavar=opt.metavar,
                action="append" if opt.repeat else "store",
                help=help_text,
            )
    return parser


def _load_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist. Check the --config path.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {path} is not valid YAML: {exc}.") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"Config file {path} must be a mapping of option names to values.")
    known = {o.name for o in OPTIONS} | {"judges"}
    out = {}
    for key, value in loaded.items():
        name = str(key).replace("-", "_")
        if name == "models":
            name = "model"
        if name == "judges" and not (
            isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
        ):
            name = "judge"
        if name not in known:
            raise ConfigError(
                f"Config file {path}, key {key!r}: unknown option. Known keys: "
                f"{', '.join(sorted(known))}."
            )
        out[name] = value
    return out


def _as_list(value: Any) -> list[str]:
    items = value if isinstance(value, list | tuple) else [value]
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def _endpoints(text: str, default: str) -> tuple[str, ...]:
    return tuple(e.strip() for e in text.split("+") if e.strip()) or (default,)


def _thresholds(raw: Any) -> list[Threshold]:
    out = []
    for item in _as_list(raw):
        metric, sep, value = item.rpartition("=")
        if not sep or not metric.strip():
            raise ValueError(f"{item!r} is not METRIC=VALUE")
        try:
            out.append(Threshold(metric.strip(), float(value)))
        except ValueError:
            raise ValueError(f"{item!r} is not METRIC=VALUE with a number") from None
    return out


def _file_judges(items: list[dict[str, Any]], path: Path, default: str) -> list[JudgeSpec]:
    """`judges:` in a config file as mappings: name, endpoint(s), temperature, max_tokens."""
    out = []
    for i, item in enumerate(items):
        where = f"Config file {path}, key judges[{i}]"
        unknown = set(item) - {"name", "endpoint", "endpoints", "temperature", "max_tokens"}
        if unknown or not isinstance(item.get("name"), str):
            raise ConfigError(
                f"{where}: needs 'name' and may have endpoint(s), temperature, max_tokens "
                f"(unknown keys: {sorted(unknown)})."
            )
        endpoints = item.get("endpoints") or item.get("endpoint") or default
        endpoints = endpoints if isinstance(endpoints, list) else str(endpoints).split("+")
        try:
            temperature = item.get("temperature")
            temperature = None if temperature is None else _temperature(str(temperature))
            max_tokens = item.get("max_tokens")
            max_tokens = None if max_tokens is None else _positive_int(str(max_tokens))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}.") from None
        out.append(JudgeSpec(item["name"], tuple(map(str, endpoints)), temperature, max_tokens))
    return out


def resolve(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> EvalConfig:
    """Parse flags, read the config file and environment, and return the frozen config."""
    environ = dict(os.environ if environ is None else environ)
    args = build_parser().parse_args(argv)
    from_file = _load_file(args.config) if args.config else {}
    values: dict[str, Any] = {}
    given: set[str] = set()
    for opt in OPTIONS:
        cli = getattr(args, opt.name)
        if cli is not None:
            raw, where, given_ = cli, f"flag {opt.flag}", True
        elif opt.name in from_file:
            raw, where, given_ = (
                from_file[opt.name],
                f"config file {args.config}, key {opt.name}",
                True,
            )
        elif opt.env and environ.get(opt.env):
            raw, where, given_ = environ[opt.env], f"environment variable {opt.env}", True
        else:
            values[opt.name] = opt.default
            continue
        if given_:
            given.add(opt.name)
        try:
            if opt.name == "fail_under":
                values[opt.name] = _thresholds(raw)
            elif opt.repeat:
                values[opt.name] = _as_list(raw)
            elif raw is None:
                values[opt.name] = opt.default
            else:
                values[opt.name] = opt.convert(raw if opt.convert is _bool else str(raw))
        except ValueError as exc:
            raise ConfigError(f"Invalid value {raw!r} for {where}: {exc}.") from None
    models = []
    for item in _as_list(values["model"]):
        model_id, _, url = item.partition("@")
        models.append(ModelSpec(id=model_id, base_url=url or values["base_url"]))
    if len({m.id for m in models}) != len(models):
        raise ConfigError(f"The same model id appears twice in --model: {values['model']}.")
    judges = []
    for item in _as_list(values["judge"]):
        name, _, endpoints = item.partition("@")
        judges.append(JudgeSpec(name, _endpoints(endpoints, values["judge_endpoint"])))
    if "judges" in from_file and "judge" not in given:
        judges = _file_judges(from_file["judges"], args.config, values["judge_endpoint"])
    return EvalConfig(
        data=values["data"],
        models=tuple(models),
        model_given="model" in given,
        system_prompt=values["system_prompt"],
        temperature=values["temperature"],
        max_tokens=values["max_tokens"],
        gateway_url=values["gateway_url"].rstrip("/"),
        gateway_config=values["gateway_config"],
        judges=tuple(judges),
        judge_endpoint=values["judge_endpoint"],
        judge_temperature=values["judge_temperature"],
        judge_max_tokens=values["judge_max_tokens"],
        judges_file=values["judges_file"],
        judge_format=values["judge_format"],
        judge_repeats=values["judge_repeats"],
        fail_under=tuple(values["fail_under"] or ()),
        tracking_uri=values["tracking_uri"],
        experiment=values["experiment"],
        stack=values["stack"],
        concurrency=values["concurrency"],
        timeout=values["timeout"],
        max_retries=values["max_retries"],
        cache_dir=values["cache_dir"],
        no_cache=values["no_cache"],
        refresh=values["refresh"],
        quiet=values["quiet"],
        input_col=values["input_col"],
        target_col=values["target_col"],
        context_col=values["context_col"],
        report=values["report"],
        output=values["output"],
    )
