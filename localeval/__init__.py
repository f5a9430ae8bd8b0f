"""Evaluate a local LLM with LLM-as-a-judge metrics in MLflow, the judge behind an AI Gateway.

The pipeline, one folder per stage (ARCHITECTURE.md): `config` (the flags, cut into slices) →
`dataset` → `candidate` (the answers) → `judging` (the verdicts) → `tracking` (the MLflow run)
→ `output` (terminal, HTML, exports); `serving` starts and checks the servers, `calls` is the one
way the candidate and the judges call a model, `types` holds the records they all share.
Importing this package costs no MLflow import; the names below are its public face.
"""

from .config.settings import EvalConfig, resolve
from .dataset import Columns, load_dataset
from .errors import EvalError
from .judging.verdict import parse_json_verdict, parse_verdict
from .stats import bootstrap_ci, cohen_kappa_quadratic, krippendorff_alpha, paired_bootstrap
from .types import Dataset, JudgeSpec, ModelSpec, RowResult, Sample, Score, UnscoredReason

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
    "UnscoredReason",
    "bootstrap_ci",
    "cohen_kappa_quadratic",
    "krippendorff_alpha",
    "load_dataset",
    "paired_bootstrap",
    "parse_json_verdict",
    "parse_verdict",
    "resolve",
]
