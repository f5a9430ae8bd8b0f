"""The command line's parser: argparse whose faults are one-paragraph ConfigErrors (exit 2, no
usage block), an unknown option named with the closest known one."""

from __future__ import annotations

import argparse
import difflib
import re
from typing import Any, NoReturn

from ..errors import ConfigError

HELP_HINT = "('--help' lists every option)"


class Parser(argparse.ArgumentParser):
    """argparse whose faults are one-paragraph ConfigErrors (exit 2, no usage block): an unknown
    option is named with the closest known one."""

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            raise ConfigError(self._unknown(extras))
        return parsed

    def error(self, message: str) -> NoReturn:
        """argparse's own faults (an option without its value, a value given to a switch, an
        ambiguous abbreviation), said in one paragraph."""
        if m := re.fullmatch(r"argument (\S+): expected one argument", message):
            flag = m.group(1)
            action = self._option_string_actions.get(flag)
            metavar = getattr(action, "metavar", None) or "VALUE"
            message = f"option {flag} needs a value ({flag} {metavar})"
        elif m := re.fullmatch(r"argument (\S+): ignored explicit argument '(.*)'", message):
            flag, value = m.groups()
            message = f"option {flag} is a switch and takes no value ({flag}, not {flag}={value})"
        elif m := re.fullmatch(r"ambiguous option: ([^=\s]+)\S* could match (.*)", message):
            could = " or ".join(m.group(2).split(", "))
            message = f"ambiguous option {m.group(1)}: it could be {could}; write it in full"
        raise ConfigError(f"{message} {HELP_HINT}")

    def _unknown(self, extras: list[str]) -> str:
        """What is wrong with the arguments argparse did not take: unknown options, each with the
        closest known one, and values no option took."""
        known = [s for action in self._actions for s in action.option_strings]
        unknown: list[str] = []
        stray: list[str] = []
        value_of_unknown = False  # the argument after `--typo` is most likely its value
        for arg in extras:
            if arg.startswith("-") and arg != "--" and not _is_number(arg):
                name = arg.partition("=")[0]
                if name not in unknown:
                    unknown.append(name)
                value_of_unknown = "=" not in arg
            elif value_of_unknown:
                value_of_unknown = False
            else:
                stray.append(arg)
        parts = []
        if unknown:
            hints = [difflib.get_close_matches(name, known, n=1, cutoff=0.6) for name in unknown]
            if len(unknown) == 1:
                hint = f"; did you mean {hints[0][0]}?" if hints[0] else ""
                parts.append(f"unknown option {unknown[0]}{hint}")
            else:
                named = [
                    f"{name} (did you mean {close[0]}?)" if close else name
                    for name, close in zip(unknown, hints)
                ]
                parts.append(f"unknown options {', '.join(named)}")
        if stray:
            parts.append(
                f"unexpected argument{'s' if len(stray) > 1 else ''} {' '.join(stray)}: every "
                "value follows its option (--data PATH), once per value for a repeatable one "
                "(--model a --model b)"
            )
        return f"{'; '.join(parts)} {HELP_HINT}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
