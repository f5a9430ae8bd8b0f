"""Evaluate a local LLM with LLM-as-a-judge metrics in MLflow (see README.md).

pipenv run python mlflow_evaluate.py [--help]
"""

from __future__ import annotations

import gc
import signal
import sys
from contextlib import ExitStack

from localeval import workspace
from localeval.config.settings import resolve
from localeval.config.slices import OutputOptions
from localeval.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNEXPECTED,
    EvalError,
    GateFailed,
    RowsFailed,
)
from localeval.serving import servers
from localeval.tracking.store import default_tracking_uri
from localeval.tracking.store import preflight as preflight_store
from localeval.workspace import private_run


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # Unwind like Ctrl-C so the servers we started are stopped (the default handler would not).
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    thresholds = gc.get_threshold()
    # MLflow, pandas and SQLAlchemy leave ~1M long-lived objects: with the default thresholds
    # the collector scanned them all 10 times in a 200-row run (2.4 s of a 10.5 s run; 0.4 s
    # and 8.5 s with these). Young generations stay collected, so memory does not grow.
    gc.set_threshold(50_000, 50, 100)
    try:
        return _main(argv)
    finally:
        gc.set_threshold(*thresholds)


def _main(argv: list[str] | None) -> int:
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with private_run() as run_files:
        code, server_fault = EXIT_UNEXPECTED, True
        try:
            code, server_fault = _evaluate(argv)
            return code
        finally:
            # When the servers we started may be at fault (one did not start or answer, calls
            # failed, a bug), their logs are kept: the first place to look. Not for a bad flag
            # or data file, nor for a gate that failed (a verdict on the model, not a fault).
            if server_fault and (kept := run_files.keep_logs()):
                print(f"The logs of the servers we started are kept in {kept}", file=sys.stderr)


def _evaluate(argv: list[str] | None) -> tuple[int, bool]:
    """The exit code, and whether the servers we started may be at fault."""
    try:
        config = resolve(argv)
        # Seconds, before any server starts: MLflow would retry a dead server for minutes.
        preflight_store(config.tracking_uri or default_tracking_uri())
        with ExitStack() as services:
            launch = None
            if config.agreement is None:
                # Before MLflow's import (seconds): the servers a run needs boot meanwhile.
                from localeval.launch import early

                launch = early(config, services)
            # Imported after the flags are read: --help must not pay for MLflow's import.
            from localeval.output.publish import publish
            from localeval.runner import run
            from localeval.tracking.feedback import agreement_run
            from localeval.tracking.mlflow_run import log_text, quiet_mlflow

            with quiet_mlflow():
                if config.agreement is not None:
                    outcome = agreement_run(config)
                else:
                    outcome = run(config, launch, services)
                publish(outcome, OutputOptions.of(config), log_text(outcome.tracking_uri))
        if outcome.gate_failures:
            gates = [g for g, on in (("--fail-under", config.fail_under),
                                     ("--fail-if-worse", config.fail_if_worse)) if on]  # fmt: skip
            raise GateFailed(
                f"The {' and '.join(gates)} gate failed (everything was logged first):\n  "
                + "\n  ".join(outcome.gate_failures)
            )
        # A row without an answer failed; one a judge's call failed on is unscored by it. Both
        # exit 3: a re-run asks for just what is missing.
        failed = outcome.failed_rows
        judged = sum(r.judge_failed for m in outcome.results for r in m.rows)
        if dead := workspace.dead():
            lost = f" {failed + judged} row(s) failed with that reason;" * bool(failed + judged)
            raise servers.died_error(
                dead,
                f"during the run.{lost} the run was logged, the answers received are cached "
                "and a re-run asks only for the rest",
            )
        if failed or judged:
            what = []
            if failed:
                what.append(
                    f"{failed} row(s) failed after retries; the run was logged with them marked "
                    "failed."
                )
            # A judge with several endpoints still scores a row one of them failed on.
            partial = sum(
                r.judge_failed and r.status == "ok" for m in outcome.results for r in m.rows
            )
            if judged - partial:
                what.append(
                    f"{judged - partial} row(s) are unscored: a judge call failed after retries "
                    "(judge_error); the run was logged with them marked unscored."
                )
            if partial:
                what.append(
                    f"{partial} row(s) were scored by only some of their judge's endpoints: a call "
                    "to another failed after retries (judge_error, counted in partial_rows)."
                )
            raise RowsFailed(
                " ".join(what) + " Re-run the same command to retry only those rows (answers "
                "and verdicts received are cached)."
            )
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code, exc.server_fault
    except KeyboardInterrupt:
        print(
            "interrupted: servers we started were stopped; answers received so far are cached "
            "(unless --no-cache) and a re-run asks only for the rest.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED, False
    return EXIT_OK, False


if __name__ == "__main__":
    exit_code = main()
    # The interpreter's finalization would scan MLflow's ~1M objects again, collection after
    # collection, as it tears the modules down: 1.7 s of a 4.8 s warm run. Frozen, they are left
    # to the operating system.
    gc.freeze()
    sys.exit(exit_code)
