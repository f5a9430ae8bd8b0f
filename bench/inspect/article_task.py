"""The article's questions as an Inspect AI task: generate, then model_graded_fact (Inspect's
own LLM judge), for bench/bench_inspect.py. Runs in bench/.venv-inspect, not the project's."""

import csv
import os
from pathlib import Path

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import model_graded_fact
from inspect_ai.solver import generate


@task
def article_qa() -> Task:
    path = Path(os.environ.get("BENCH_DATA", Path(__file__).parents[2] / "data" / "article_qa.csv"))
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    samples = [Sample(input=r["inputs"], target=r["ground_truth"]) for r in rows]
    return Task(dataset=samples, solver=generate(), scorer=model_graded_fact())
