"""What the user gets after the run: the HTML report in each MLflow run, the terminal report,
and the --report / --output files (written before any exit code is decided: a CI gate reads them).
"""

from __future__ import annotations

from mlflow import MlflowClient

from ..config.settings import EvalConfig
from ..types import Outcome
from .export import write_exports
from .html import render_html, render_outcome, write_report
from .terminal import format_comparison, format_outcome


def log_reports(outcome: Outcome) -> None:
    """Each model's run gets its own report.html; a parent run gets the comparison."""
    client = MlflowClient(outcome.tracking_uri)
    for result in outcome.results:
        page = render_html([result], dataset=outcome.dataset.name, notes=outcome.notes)
        client.log_text(result.run_id, page, "report.html")
    if outcome.parent_run_id is not None:
        client.log_text(outcome.parent_run_id, format_comparison(outcome.results), "comparison.txt")
        client.log_text(outcome.parent_run_id, render_outcome(outcome), "report.html")


def publish(outcome: Outcome, config: EvalConfig) -> None:
    """Log the reports, print the terminal report, write the files asked for."""
    if config.agreement is not None:  # no rows to show: the agreement alone
        print(format_outcome(outcome, rows=config.rows, verbose=config.verbose))
        return
    log_reports(outcome)
    print(format_outcome(outcome, rows=config.rows, verbose=config.verbose))
    if config.report is not None:
        print(f"HTML report: {write_report(outcome, config.report)}")
    if config.output is not None:
        rows, aggregates = write_exports(outcome, config.output)
        print(f"Per-row results: {rows}\nAggregates: {aggregates}")
