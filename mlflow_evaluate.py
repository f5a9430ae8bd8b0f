"""Evaluate a local LLM with LLM-as-a-judge metrics in MLflow (see README.md).

pipenv run python mlflow_evaluate.py [--help]
"""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING

from localeval.errors import EXIT_INTERRUPTED, EXIT_OK, EvalError, GateFailed, RowsFailed

if TYPE_CHECKING:
    from localeval.runner import Outcome


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # Unwind like Ctrl-C so the servers we started are stopped (the default handler would not).
    raise KeyboardInterrupt


def _write_files(outcome: Outcome) -> None:
    """--report and --output, written before any exit code is decided (a CI gate reads them)."""
    config = outcome.config
    if config.report is not None:
        from localeval.html_report import write_report

        print(f"HTML report: {write_report(outcome, config.report)}")
    if config.output is not None:
        from localeval.export import write_exports

        rows, aggregates = write_exports(outcome, config.output)
        print(f"Per-row results: {rows}\nAggregates: {aggregates}")


def main(argv: list[str] | None = None) -> int:
    from localeval.config import resolve

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _stop_on_sigterm)

    try:
        config = resolve(argv)
        from localeval.report import format_outcome
        from localeval.runner import run

        outcome = run(config)
        print(format_outcome(outcome))
        _write_files(outcome)
        if outcome.gate_failures:
            raise GateFailed(
                "The --fail-under gate failed (everything was logged first):\n  "
                + "\n  ".join(outcome.gate_failures)
            )
        if outcome.failed_rows:
            raise RowsFailed(
                f"{outcome.failed_rows} row(s) failed after retries; the run was logged with "
                "them marked failed. Re-run the same command to retry only those rows (answers "
                "received are cached)."
            )
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            "interrupted: servers we started were stopped; answers received so far are cached "
            "(unless --no-cache) and a re-run asks only for the rest.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
