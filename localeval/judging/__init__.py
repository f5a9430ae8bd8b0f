"""Judges and their verdicts: the judges defined (`judges`: MLflow's built-in prompts, YAML
ones), asking them per row (`grading`), reading a reply into a score or the reason it could not
be (`verdict`), the judge against people's grades (`agreement`) and the CI gates (`gate`).
The prompts themselves are versioned in `localeval.prompts`. Imports `calls`, `config` and the
shared ground; never MLflow's run or the output."""

from .verdict import parse_json_verdict, parse_verdict

__all__ = ["parse_json_verdict", "parse_verdict"]
