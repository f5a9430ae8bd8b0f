"""Evaluate a local LLM with LLM-as-a-judge metrics in MLflow, the judge behind an AI Gateway.

Data flow, one module each: config → dataset → candidate (answers) → grading (verdicts) →
tracking (the MLflow run) → report, html_report, export. `types` holds what they all share;
`stack` starts the embedded servers; `client`, `cache` and `transport` are the one way the
candidate and the judges call a model.
"""

from .config.settings import EvalConfig, resolve
from .dataset import Columns, load_dataset
from .errors import EvalError
from .judging.verdict import parse_json_verdict, parse_verdict
from .stats import bootstrap_ci, cohen_kappa_quadratic, krippendorff_alpha, paired_bootstrap
from .types import Dataset, JudgeSpec, ModelSpec, RowResult, Sample, Score

__all__ = [
    "Columns",
    "Dataset",
    "EvalConfig",
    "EvalError",
    "JudgeSpec",
    "ModelSpec",
    "RowResult",
    "Sample",
    "Score",
    "bootstrap_ci",
    "cohen_kappa_quadratic",
    "krippendorff_alpha",
    "load_dataset",
    "paired_bootstrap",
    "parse_json_verdict",
    "parse_verdict",
    "resolve",
]
