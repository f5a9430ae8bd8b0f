"""Can the judge be trusted head to head? A known-answer check (a script, not a test).

From data/judge_check.csv (answers to the same question whose constructed grades differ), each
question's highest-graded answer against its lowest-graded one, the better one in column
`answer_a` on odd rows and in `answer_b` on even ones, with a person's preference in
`human_preference` (A or B): written to data/pairwise_check.csv. Then one run of the entry
script on it, `--answer-col answer_a --answer-col answer_b --pairwise`: the pair's metrics are
the judge's agreement with people (with and without ties, 95% intervals), its position
consistency (with its interval) and first-position rate.

    .venv/bin/python bench/bench_pairwise_check.py            # the embedded stand-in judge
    .venv/bin/python bench/bench_pairwise_check.py -- --gateway-url http://127.0.0.1:5002
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "data" / "judge_check.csv"
PAIRS = ROOT / "data" / "pairwise_check.csv"
GRADE = "human_answer_similarity"


def build_pairs() -> int:
    """Write data/pairwise_check.csv; the number of pairs."""
    by_question: dict[str, list[dict[str, str]]] = defaultdict(list)
    with SOURCE.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            by_question[row["id"].split("-")[0]].append(row)
    pairs = []
    for qid, rows in sorted(by_question.items()):
        rows.sort(key=lambda r: int(r[GRADE]))
        worse, better = rows[0], rows[-1]
        if int(better[GRADE]) > int(worse[GRADE]):
            first = len(pairs) % 2 == 0  # the better answer shown as A on every other row
            a, b = (better, worse) if first else (worse, better)
            pairs.append(
                {
                    "id": qid,
                    "lang": better["lang"],
                    "inputs": better["inputs"],
                    "ground_truth": better["ground_truth"],
                    "answer_a": a["answer"],
                    "answer_b": b["answer"],
                    "human_preference": "A" if first else "B",
                    "grade_a": a[GRADE],
                    "grade_b": b[GRADE],
                }
            )
    with PAIRS.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(pairs[0]))
        writer.writeheader()
        writer.writerows(pairs)
    return len(pairs)


def main(extra: list[str]) -> int:
    n = build_pairs()
    print(f"{n} pairs written to {PAIRS.relative_to(ROOT)}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="pairwise-check-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    argv = [sys.executable, str(ROOT / "mlflow_evaluate.py"), "--data", str(PAIRS),
            "--tracking-uri", uri, "--cache-dir", str(work / "cache"), "--quiet",
            "--rows", "none", "--answer-col", "answer_a", "--answer-col", "answer_b",
            "--pairwise", *extra]  # fmt: skip
    proc = subprocess.run(argv, cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        return proc.returncode
    print(proc.stdout[proc.stdout.rfind("Head to head") :][:1500])
    import mlflow

    client = mlflow.MlflowClient(uri)
    (parent,) = [r for r in client.search_runs(["1"]) if "mlflow.parentRunId" not in r.data.tags]
    for key, value in sorted(parent.data.metrics.items()):
        if key.startswith("pairwise/"):
            print(f"  {key.rpartition('/')[2]}: {value:.3g}")
    return 0


if __name__ == "__main__":
    argv = sys.argv[1:]
    sys.exit(main(argv[1:] if argv[:1] == ["--"] else argv))
