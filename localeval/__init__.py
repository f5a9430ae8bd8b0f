"""Evaluate a local LLM with LLM-as-a-judge metrics in MLflow, the judge behind an AI Gateway.

Data flow, one module each: config → dataset → candidate (answers) → judges (verdicts) →
runner (the MLflow run) → report. `stack` starts the embedded servers; `client` and `cache` are
the one transport the candidate and the judges share.
"""

from .config import EvalConfig, JudgeSpec, ModelSpec, resolve
from .dataset import Columns, Dataset, Sample, load_dataset
from .errors import EvalError
from .stats import bootstrap_ci, cohen_kappa_quadratic, krippendorff_alpha, paired_bootstrap
from .verdict import Score, parse_json_verdict, parse_verdict

__all__ = [
    "Columns",
    "Dataset",
    "EvalConfig",
    "EvalError",
    "JudgeSpec",
    "ModelSpec",
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
