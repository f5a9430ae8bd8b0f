"""Can the judge be trusted head to head? A known-answer check (a script, not a test).

From data/judge_check.csv (answers to the same question whose constructed grades differ), each
question's highest-graded answer against its lowest-graded one: people prefer the former, so a
trustworthy judge picks it in both orders. The pairs are written to data/pairwise_check.csv
(columns `better`, `worse`), then two runs of the entry script on the same data, the first
answering with `worse` from the data, the second with `better` and `--baseline last
--pairwise`: the second run's `pairwise/baseline_vs_*` metrics are the judge's agreement with
people (win rate: ties count half; and without ties), its position consistency and
first-position rate, with intervals.

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
            pairs.append(
                {
                    "id": qid,
                    "lang": better["lang"],
                    "inputs": better["inputs"],
                    "ground_truth": better["ground_truth"],
                    "better": better["answer"],
                    "worse": worse["answer"],
                    "better_grade": better[GRADE],
                    "worse_grade": worse[GRADE],
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
    common = [sys.executable, str(ROOT / "mlflow_evaluate.py"), "--data", str(PAIRS),
              "--tracking-uri", uri, "--cache-dir", str(work / "cache"), "--quiet",
              "--rows", "none", *extra]  # fmt: skip
    for args in (["--answer-col", "worse"], ["--answer-col", "better", "--baseline", "last",
                                              "--pairwise"]):  # fmt: skip
        proc = subprocess.run([*common, *args], cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
    print(proc.stdout[proc.stdout.find("vs baseline") - 200 :][:1500])
    import mlflow

    client = mlflow.MlflowClient(uri)
    run = client.search_runs(["1"], order_by=["attribute.start_time DESC"])[0]
    figures = {k.rpartition("/")[2]: v for k, v in run.data.metrics.items() if "pairwise/" in k}
    for key in sorted(figures):
        print(f"  {key}: {figures[key]:.3g}")
    decided = figures.get("wins", 0) + figures.get("losses", 0)
    if decided:
        print(f"  agreement without ties: {figures.get('wins', 0) / decided:.3g} of {decided:g}")
    return 0


if __name__ == "__main__":
    argv = sys.argv[1:]
    sys.exit(main(argv[1:] if argv[:1] == ["--"] else argv))
