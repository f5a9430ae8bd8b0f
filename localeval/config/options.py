"""Declaring an option once: a dataclass field carries its flag, environment variable, help,
default and parser, and the command line, the config file and YAML records are all read from
those declarations.

Precedence, highest first: command-line flag > config file > environment variable > default.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

REQUIRED: Any = dataclasses.MISSING


@dataclass(frozen=True)
class Spec:
    """How one field is given: its help, flag, environment variable and parser."""

    help: str = ""
    parse: Callable[[Any], Any] = str
    env: str | None = None
    metavar: str | None = None
    repeat: bool = False  # a flag given several times (or comma-separated) makes a tuple
    switch: bool = False  # a flag without a value
    aliases: tuple[str, ...] = ()  # other names accepted in a config file
    flag: bool = True  # False: config file only
    default_text: str | None = None  # --help shows this as the default, not the field's value


def option(default: Any, help: str = "", **spec: Any) -> Any:
    """A dataclass field declared as an option (see `Spec` for the keywords)."""
    return field(default=default, metadata={"spec": Spec(help, **spec)})


def _spec(f: dataclasses.Field) -> Spec | None:
    return f.metadata.get("spec")


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


# ---- parsers: each takes a flag's text or a YAML value and raises ValueError with the rule ----


def text(value: Any) -> str:
    if isinstance(value, dict | list):
        raise ValueError("must be a single value")
    return str(value)


def non_empty(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("required, a non-empty string")
    return value.strip()


def integer(low: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("must be a whole number")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
        if low is not None and number < low:
            raise ValueError(f"must be at least {low}" if low else "must be 0 or more")
        return number

    return parse


def number(low: float | None = None, high: float | None = None, above: float | None = None):
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            result = float(str(value).strip())
        except ValueError:
            raise ValueError("must be a number") from None
        if low is not None and high is not None and not low <= result <= high:
            raise ValueError(f"must be between {low:g} and {high:g}")
        if above is not None and result <= above:
            raise ValueError(f"must be more than {above:g}")
        return result

    return parse


def choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if str(value) not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return str(value)

    return parse


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def path(value: Any) -> Path:
    return Path(text(value))


def items(value: Any) -> list[Any]:
    """A repeated flag's values, a YAML list, or a comma-separated text, as one flat list."""
    values = value if isinstance(value, list | tuple) else [value]
    out: list[Any] = []
    for item in values:
        if isinstance(item, str):
            out += [part.strip() for part in item.split(",") if part.strip()]
        elif item is not None:
            out.append(item)
    return out


# ---- the command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One argparse argument per flag-able field of `cls`, help showing default and env."""
    for f in dataclasses.fields(cls):
        spec = _spec(f)
        if spec is None or not spec.flag:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        if isinstance(default, tuple):  # show a judge spec by its name
            default = ",".join(str(getattr(v, "name", v)) for v in default) or None
        shown = f"default: {default if spec.default_text is None else spec.default_text}"
        env = f", env {spec.env}" if spec.env else ""
        help_text = f"{spec.help} ({shown}{env})"
        if spec.switch:
            kwargs: dict[str, Any] = {"action": "store_const", "const": True}
        else:
            kwargs = {"metavar": spec.metavar, "action": "append" if spec.repeat else "store"}
        parser.add_argument(flag_name(f.name), dest=f.name, default=None, help=help_text, **kwargs)


def resolve(
    cls: type,
    flags: Mapping[str, Any],
    file_values: Mapping[str, Any],
    file_path: Path | None,
    environ: Mapping[str, str],
    file_keys: Mapping[str, str] = {},
) -> tuple[dict[str, Any], dict[str, str]]:
    """Each option's value by precedence, parsed; and the options the user gave (not defaults),
    each with how, in the user's words for a message: `--model`, `'models:' in run.yaml` (the
    key as written, `file_keys`: field name -> key) or `$EVAL_MODEL`."""
    values: dict[str, Any] = {}
    given: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        spec = _spec(f)
        if spec is None:
            continue
        if flags.get(f.name) is not None:
            raw, where = flags[f.name], f"flag {flag_name(f.name)}"
            given[f.name] = flag_name(f.name)
        elif f.name in file_values:
            raw = file_values[f.name]
            where = f"config file {file_path}, key {file_keys.get(f.name, f.name)}"
            given[f.name] = f"'{file_keys.get(f.name, f.name)}:' in {file_path}"
        elif spec.env and environ.get(spec.env):
            raw, where = environ[spec.env], f"environment variable {spec.env}"
            given[f.name] = f"${spec.env}"
        else:
            continue
        if raw is None:  # `key:` with no value in the file: the default
            continue
        try:
            values[f.name] = spec.parse(items(raw) if spec.repeat else raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(_invalid(spec, raw, where, str(exc))) from None
    return values, given


def _invalid(spec: Spec, raw: Any, where: str, why: str) -> str:
    """The message for a value its parser refused, naming the value as the user wrote it: of a
    repeatable option, the one bad item (not the list the values were gathered in)."""
    value = raw
    if spec.repeat:
        given = items(raw)
        value = next((item for item in given if _refused(spec.parse, item)), given)
    shown = repr(value) if isinstance(value, str) else _yaml_text(value)
    if why.startswith(shown):  # the parser's rule names the value already
        return f"Invalid value for {where}: {why}."
    return f"Invalid value {shown} for {where}: {why}."


def _refused(parse: Callable[[Any], Any], item: Any) -> bool:
    try:
        parse([item])
    except (TypeError, ValueError):
        return True
    return False


def _yaml_text(value: Any) -> str:
    """A config file's value as YAML writes it inline (`[a, b]`, `{name: x}`, `true`)."""
    try:
        text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000, sort_keys=False)
    except yaml.YAMLError:
        return repr(value)
    return text.removesuffix("\n...\n").strip()


# ---- YAML files and records ------------------------------------------------------------------


def load_yaml(path: Path, what: str, hint: str) -> Any:
    """A YAML file's content, or a ConfigError naming the file (`what`) and how to fix it."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist. {hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc}.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}.") from None


def file_options(
    cls: type, loaded: Any, path: Path, extra: Mapping[str, str] = {}
) -> tuple[dict[str, Any], dict[str, str]]:
    """A config file's mapping as {field name: raw value}, and {field name: the key as written}
    (an alias names the option in messages as the user wrote it); unknown keys: a ConfigError."""
    if loaded is None:
        return {}, {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"Config file {path} must be a mapping of option names to values.")
    names: dict[str, str] = dict(extra)
    for f in dataclasses.fields(cls):
        if (spec := _spec(f)) is not None:
            names[f.name] = f.name
            names.update(dict.fromkeys(spec.aliases, f.name))
    out, keys = {}, {}
    for key, value in loaded.items():
        name = names.get(str(key).replace("-", "_"))
        if name is None:
            raise ConfigError(
                f"Config file {path}, key {key!r}: unknown option. Known keys: "
                f"{', '.join(sorted(set(names)))}."
            )
        out[name], keys[name] = value, str(key)
    return out, keys


def record(cls: type, data: Any, where: str, fail: Callable[[str, str], Exception]) -> Any:
    """A YAML mapping as an instance of `cls` (a dataclass declared with `option` fields).

    Args:
        where: the record's key path for messages, e.g. `judges[0]`.
        fail: makes the exception for (key path, what is wrong).
    """
    if not isinstance(data, dict):
        raise fail(where, "must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls) if _spec(f) is not None}
    known = {alias: name for name, f in fields.items() for alias in (name, *_spec(f).aliases)}
    for key in data:
        if key not in known:
            raise fail(f"{where}.{key}", f"unknown key; known keys: {', '.join(sorted(known))}")
    values = {}
    for key, raw in data.items():
        parse = _spec(fields[known[key]]).parse
        if getattr(parse, "nested", False):  # a nested record names its own keys
            values[known[key]] = parse(raw, f"{where}.{key}")
            continue
        try:
            values[known[key]] = parse(raw)
        except (TypeError, ValueError) as exc:
            raise fail(f"{where}.{key}", str(exc)) from None
    for name, f in fields.items():
        if name not in values and f.default is dataclasses.MISSING:
            raise fail(f"{where}.{name}", "required")
    return cls(**values)


def nested(cls: type, fail: Callable[[str, str], Exception]) -> Callable[[Any, str], Any]:
    """A parser for one `cls` record inside another."""

    def parse(value: Any, where: str) -> Any:
        return record(cls, value, where, fail)

    parse.nested = True  # type: ignore[attr-defined]
    return parse


def records(cls: type, fail: Callable[[str, str], Exception]) -> Callable[[Any, str], tuple]:
    """A parser for a YAML list of `cls` records, naming each by its index."""

    def parse(value: Any, where: str) -> tuple:
        if not isinstance(value, list):
            raise fail(where, "must be a list")
        return tuple(record(cls, item, f"{where}[{i}]", fail) for i, item in enumerate(value))

    parse.nested = True  # type: ignore[attr-defined]
    return parse
