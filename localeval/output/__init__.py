"""What the user reads: the terminal report (`terminal`), the HTML page (`html`, with
`templates/` and `static/`, charts as geometry in `charts`), exports for scripts and CI
(`export`), their shared wording (`present`), all written after the run by `publish`. Renders
the typed results (`localeval.types`) only: no MLflow, no pandas, no runner."""

from .publish import publish

__all__ = ["publish"]
