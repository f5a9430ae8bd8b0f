"""Expected faults and the exit codes they map to.

An `EvalError` is a fault the user can fix (bad input, nothing listening, a gate not met): the
entry script prints its one-paragraph message and exits with its code, without a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_UNEXPECTED = 1  # a bug: Python prints the traceback
EXIT_CANNOT_RUN = 2  # bad config, data or judges file; a server that does not answer
EXIT_ROWS_FAILED = 3  # rows failed or a judge call failed after retries (logged), or a server
# we started died
EXIT_GATE_FAILED = 4  # a --fail-under or --fail-if-worse gate failed (everything was logged first)
EXIT_INTERRUPTED = 130  # Ctrl-C: what was answered so far is kept in the cache

EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}    success
  {EXIT_UNEXPECTED}    unexpected error (a bug: please report the traceback)
  {EXIT_CANNOT_RUN}    could not run: bad flag, config, data or judges file, or a server
         that does not answer
  {EXIT_ROWS_FAILED}    completed and logged, but some rows failed (no answer) or are unscored by
         a judge call that failed, after retries (see the table);
         or a server this run started (llama.cpp, gateway) died: the message says how
  {EXIT_GATE_FAILED}    completed and logged, but a --fail-under threshold was not met or
         --fail-if-worse found a judge worse than --baseline
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); answers received so far are cached for the next run"""


class EvalError(Exception):
    """A fault with a message for the user and the process exit code it maps to."""

    exit_code = EXIT_CANNOT_RUN
    # Whether the servers we started may be at fault: then their logs are kept for the user.
    server_fault = False

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(EvalError, ValueError):
    """A flag, environment variable or config file value is invalid."""


class DataError(EvalError, ValueError):
    """The dataset cannot be read or a row is invalid; the message names file, row and column."""


class PreflightError(EvalError):
    """A server the run needs does not answer, or does not serve what the run asks for."""

    server_fault = True


class StackError(EvalError):
    """An embedded server could not be started."""

    server_fault = True


class ServerError(EvalError):
    """A server refused a request in a way retrying cannot fix (auth, bad request)."""

    server_fault = True


class ServerDied(EvalError):
    """A server this run started exited without being asked to (crash, signal, OOM killer);
    what was answered is kept, the rest failed with that reason."""

    exit_code = EXIT_ROWS_FAILED
    server_fault = True


class RowsFailed(EvalError):
    """Rows failed, or a judge's call failed on some, after retries; everything was logged."""

    exit_code = EXIT_ROWS_FAILED
    server_fault = True


class GateFailed(EvalError):
    """A --fail-under threshold was not met; everything was logged."""

    exit_code = EXIT_GATE_FAILED
