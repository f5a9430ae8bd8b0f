"""The run's configuration, loaded once at the edge: flags, a config file, the environment and
defaults resolved into the frozen `EvalConfig` (`resolve`). Every option is declared once, as a
field (`options.option`); `values` parses the structured ones, `argv` is the command line's
parser. Imports only the shared ground (`types`, `errors`, `redact`, `prompts`)."""

from .settings import EvalConfig, build_parser, resolve

__all__ = ["EvalConfig", "build_parser", "resolve"]
