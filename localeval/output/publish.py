"""What the user gets after the run: the HTML report in each MLflow run, the terminal report,
and the --report / --output files (written before any exit code is decided: a CI gate reads them).
"""

from __future__ import annotations

from collections.abc import Callable

from ..config.slices import OutputOptions
from ..outcome import Outcome
from .export import write_exports
from .html import render_html, render_outcome, write_report
from .terminal import format_comparison, format_outcome

# Logs a text as an artifact of a run: (run id, text, artifact path), MlflowClient.log_text's
# order. Handed in by the caller, so that this stage renders and never imports MLflow.
LogText = Callable[[str, str, str], object]


def log_reports(outcome: Outcome, log_text: LogText) -> None:
    """Each model's run gets its own report.html; a parent run gets the comparison."""
    for result in outcome.results:
        page = render_html([result], dataset=outcome.dataset.name, notes=outcome.notes)
        log_text(result.run_id, page, "report.html")
    if outcome.parent_run_id is not None:
        log_text(outcome.parent_run_id, format_comparison(outcome.results), "comparison.txt")
        log_text(outcome.parent_run_id, render_outcome(outcome), "report.html")


def publish(outcome: Outcome, options: OutputOptions, log_text: LogText) -> None:
    """Log the reports (`log_text`), print the terminal report, write the files asked for."""
    if options.agreement_only:  # no rows to show: the agreement alone
        print(format_outcome(outcome, rows=options.rows, verbose=options.verbose))
        return
    log_reports(outcome, log_text)
    print(format_outcome(outcome, rows=options.rows, verbose=options.verbose))
    if options.report is not None:
        print(f"HTML report: {write_report(outcome, options.report)}")
    if options.output is not None:
        rows, aggregates = write_exports(outcome, options.output)
        print(f"Per-row results: {rows}\nAggregates: {aggregates}")
