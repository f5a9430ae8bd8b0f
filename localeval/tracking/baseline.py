"""--baseline: this run against an earlier one on the same data, row by row.

The earlier run is found in the tracking store (`last`: the newest finished run of the
experiment on the same dataset digest; parent runs of several-model comparisons have no digest
and are skipped), checked to have asked the same judges the same way, and its per-row scores are
read from its results table. The comparison is the paired bootstrap that several models get.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .. import stats
from ..errors import ConfigError
from ..judging.grading import PromptVersion
from ..types import Comparison, Dataset, JudgeInfo, ModelResult

# Params every run logs so that a later run can tell whether it is comparable.
DIGEST_PARAM = "dataset_digest"
LAYOUT_PARAM = "prompt_layout"
VERSION_PARAM = "judge_version/{name}"
RUN_PARAM = "baseline_run_id"


@dataclass(frozen=True)
class Baseline:
    """An earlier run and its per-row scores, per judge key (None: that row was unscored)."""

    run_id: str
    run_name: str
    scores: dict[str, list[float | None]]
    # Each row's answer in that run (None: its candidate call failed), for --pairwise.
    answers: tuple[str | None, ...] = ()

    @property
    def label(self) -> str:
        return f"baseline {self.run_name} ({self.run_id[:8]})"


def _find(client: MlflowClient, experiment_id: str, ref: str, dataset: Dataset) -> Any:
    if ref != "last":
        try:
            return client.get_run(ref)
        except MlflowException:
            raise ConfigError(
                f"--baseline {ref}: no such run in the tracking store. Give a run id from the "
                "MLflow UI (the run's page shows it), or --baseline last."
            ) from None
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"params.{DIGEST_PARAM} = '{dataset.digest}' "
        "and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise ConfigError(
            f"--baseline last: no finished run in this experiment on {dataset.path} (digest "
            f"{dataset.digest}). Run once without --baseline first; later runs compare with it."
        )
    return runs[0]


def find_baseline(
    tracking_uri: str,
    experiment_id: str,
    ref: str,
    dataset: Dataset,
    layout: str,
    versions: dict[str, str],
) -> Baseline:
    """The baseline run, refused (exit 2, naming the difference) unless it is comparable.

    Args:
        versions: judge key -> this run's prompt version for it.
    """
    client = MlflowClient(tracking_uri)
    run = _find(client, experiment_id, ref, dataset)
    params, name = run.data.params, run.info.run_name
    where = f"--baseline {ref} (run {name}, {run.info.run_id})"
    if params.get(DIGEST_PARAM) != dataset.digest:
        raise ConfigError(
            f"{where} was made on other data: dataset {params.get('dataset_name', '?')} with "
            f"digest {params.get(DIGEST_PARAM, '?')}, this run's is {dataset.name} with digest "
            f"{dataset.digest}. Compare runs on the same data file."
        )
    if params.get(LAYOUT_PARAM) != layout:
        raise ConfigError(
            f"{where} laid out its judge prompts as {params.get(LAYOUT_PARAM, 'unknown')!r}, "
            f"this run as {layout!r}: scores of different prompts do not compare."
        )
    judged = {}
    for key, version in versions.items():
        theirs = params.get(VERSION_PARAM.format(name=key.partition("/")[0]))
        if theirs is None:
            continue  # a judge the baseline did not have: nothing to compare it with
        if theirs != version:
            raise ConfigError(version_mismatch(where, key, theirs, version))
        judged[key] = version
    if not judged:
        raise ConfigError(f"{where} has none of this run's judges ({', '.join(versions)}).")
    path = client.download_artifacts(run.info.run_id, "eval_results_table.json")
    table = json.loads(Path(path).read_text(encoding="utf-8"))
    columns = table["columns"]
    scores = {}
    for key in judged:
        column = columns.index(f"{key}/score")
        scores[key] = [_score(row[column]) for row in table["data"]]
    answers: tuple[str | None, ...] = ()
    if "answer" in columns:
        text, error = columns.index("answer"), columns.index("candidate_error")
        answers = tuple(
            None if row[error] or not isinstance(row[text], str) else row[text]
            for row in table["data"]
        )
    return Baseline(run.info.run_id, name, scores, answers)


def version_mismatch(where: str, key: str, theirs: str, ours: str) -> str:
    """Why a baseline's judge does not compare: the two logged versions and each part of them
    (`PromptVersion`) that differs, with both values."""
    head = f"{where} asked judge {key} as {theirs!r}, this run as {ours!r}"
    try:
        differ = PromptVersion.parse(theirs).differences(PromptVersion.parse(ours))
    except ValueError:  # not a version this tool logs: the parts cannot be told apart
        parts = " | ".join(PromptVersion.WORDS.values())
        return f"{head} ({parts}): their scores do not compare."
    said = [
        f"its {PromptVersion.WORDS[name]} ({name}) is "
        + (repr(there) if there else "none (a run from before answers were quoted)")
        + f", this run's {here!r}"
        for name, there, here in differ
    ]
    return f"{head}: {'; '.join(said)}. Their scores do not compare."


def _score(value: Any) -> float | None:
    return None if value is None or value != value else float(value)


def compare_with(baseline: Baseline, result: ModelResult) -> list[Comparison]:
    """Per judge both runs have: this run's per-row scores minus the baseline's, bootstrapped."""
    out = []
    judges: dict[str, JudgeInfo] = {j.key: j for j in result.judges}
    for key, theirs in baseline.scores.items():
        ours = result.scores(key)
        if key not in judges or len(ours) != len(theirs):
            continue
        paired = stats.paired_bootstrap(theirs, ours, stats.CONFIDENCE, stats.RESAMPLES, stats.SEED)
        out.append(
            Comparison(baseline.label, result.model.id, key, paired, judges[key].greater_is_better)
        )
    return out


def metrics(comparisons: list[Comparison]) -> dict[str, float]:
    """`vs_baseline/<judge key>/mean_diff` etc., for the run's metrics (NaN left out)."""
    out = {}
    for c in comparisons:
        prefix = f"vs_baseline/{c.judge}"
        values = {
            "mean_diff": c.result.mean_diff,
            "ci_low": c.result.ci_low,
            "ci_high": c.result.ci_high,
            "p_better": c.result.p_b_better,
            "rows": float(c.result.n_pairs),
        }
        out.update({f"{prefix}/{k}": v for k, v in values.items() if v == v})
    return out
