"""Benchmark the embedded stack (a script, not a test): the real llama.cpp server and gateway.

Three measurements, each printed as a table:

  layouts   8 rows of data/sample_qa.csv, no cache, on an embedded llama.cpp server started here
            with --verbose (its log says per request how many prompt tokens it evaluated and how
            many it reused from the previous request): for each judge prompt layout, the judge
            phase's wall time and the share of the judge's prompt tokens the server evaluated.
  cold      the default main job (`python mlflow_evaluate.py`) in an empty folder, nothing
            running: it starts the embedded server and gateway, answers, judges, logs.
  warm      the same command again in that folder: every reply is in the cache.

For cold and warm: wall time, and the peak resident memory of each process (the entry script,
the llama.cpp server, the gateway's processes), sampled from /proc every 100 ms.

    .venv/bin/python bench/bench_stack.py [--skip-layouts] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EVALUATED = re.compile(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens")
LAYOUTS = ("mlflow-v1", "prefix-v2")


def _children(pid: int) -> set[int]:
    """Every live descendant of `pid`, from /proc (the servers run in sessions of their own)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _name(pid: int) -> str:
    try:
        cmd = (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")).decode()
    except OSError:
        return "?"
    for needle, name in (("llama_cpp.server", "llama.cpp server"), ("uvicorn", "gateway worker"),
                         ("gunicorn", "gateway (gunicorn)"), ("gateway", "gateway (mlflow)"),
                         ("mlflow_evaluate", "mlflow_evaluate.py")):  # fmt: skip
        if needle in cmd:
            return name
    return cmd.split(" ")[0].rsplit("/", 1)[-1]


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_sampled(argv: list[str], cwd: Path) -> tuple[float, int, dict[str, float], str]:
    """(wall s, exit code, peak RSS MB per process name, output) of one command."""
    peaks: dict[str, float] = {}
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            for pid in {proc.pid} | _children(proc.pid):
                name = _name(pid)
                peaks[name] = max(peaks.get(name, 0.0), _rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    return wall, proc.returncode, peaks, out


def _data(path: Path, rows: int) -> Path:
    with (ROOT / "data" / "sample_qa.csv").open(encoding="utf-8") as f:
        records = list(csv.DictReader(f))[:rows]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return path


def layouts(work: Path, rows: int) -> list[tuple[str, float, int, int, float]]:
    """Per layout: (layout, judge phase s, judge prompt tokens, of them evaluated, share).

    Each run is the tool's own --stack embedded run (JSON verdicts under the embedded judge's
    grammar, two-sentence answers), with its llama.cpp server made verbose and its logs kept
    here: a bench may reach inside, the tool's own runs never log per request.
    """
    from localeval.serving import stack
    from mlflow_evaluate import main

    data = _data(work / "rows.csv", rows)
    start = stack.start_llm_server
    stack.start_llm_server = lambda log_dir, env, services, port=None: start(
        work, env, services, True, port
    )
    out = []
    try:
        for layout in LAYOUTS:
            log = work / "llama.cpp server.log"
            tracking = f"sqlite:///{work / 'layouts.db'}"
            args = ["--stack", "embedded", "--data", str(data), "--no-cache", "--no-traces",
                    "--quiet", "--tracking-uri", tracking, "--experiment", layout,
                    "--judge-prompt-layout", layout]  # fmt: skip
            with contextlib.redirect_stdout(io.StringIO()):
                code = main(args)
            if code not in (0, 3):
                raise SystemExit(f"the {layout} run failed (exit {code})")
            evaluated = [int(n) for n in EVALUATED.findall(log.read_text(errors="replace"))]
            judge = evaluated[rows:]  # the candidate's calls come first, one per row
            metrics = _metrics(tracking, layout)
            prompt = int(metrics["answer_similarity/v1/judge_prompt_tokens"])
            phase = metrics["time/judge/answer_similarity_s"]
            out.append((layout, phase, prompt, sum(judge), sum(judge) / prompt))
    finally:
        stack.start_llm_server = start
    return out


def _metrics(tracking_uri: str, experiment: str) -> dict[str, float]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id])
    return run.data.metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=8, help="rows for the layouts (default 8)")
    parser.add_argument("--runs", type=int, default=1, help="cold/warm pairs, medians shown")
    parser.add_argument("--skip-layouts", action="store_true")
    parser.add_argument("--skip-default", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the folder (server logs)")
    args = parser.parse_args()
    if not args.skip_layouts:
        work = Path(tempfile.mkdtemp(prefix="localeval-bench-"))
        try:
            rows = layouts(work, args.rows)
        finally:
            if args.keep:
                print(f"kept {work}", file=sys.stderr)
            else:
                shutil.rmtree(work, ignore_errors=True)
        print(f"judge prompt layouts, {args.rows} rows, embedded llama.cpp server")
        print("layout     | judge phase s | judge prompt tokens | evaluated | share")
        for layout, phase, prompt, evaluated, share in rows:
            print(f"{layout:10} | {phase:13.1f} | {prompt:19} | {evaluated:9} | {share:.0%}")
        print(
            json.dumps({r[0]: {"judge_s": round(r[1], 2), "share": round(r[4], 3)} for r in rows})
        )
    if not args.skip_default:
        entry = [sys.executable, str(ROOT / "mlflow_evaluate.py"), "--quiet"]
        results: dict[str, list] = {"cold": [], "warm": []}
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="localeval-default-") as folder:
                for mode in ("cold", "warm"):
                    wall, code, peaks, out = run_sampled(entry, Path(folder))
                    if code != 0:
                        print(out[-3000:], file=sys.stderr)
                    results[mode].append((wall, code, peaks))
        print("\ndefault main job (python mlflow_evaluate.py), nothing running")
        for mode, runs in results.items():
            walls = [w for w, _, _ in runs]
            names = sorted({n for _, _, p in runs for n in p})
            peaks = {n: max(p.get(n, 0.0) for _, _, p in runs) for n in names}
            shown = ", ".join(f"{n} {v:.0f} MB" for n, v in peaks.items() if v > 1)
            print(f"{mode}: wall median {statistics.median(walls):.1f} s (runs: "
                  f"{', '.join(f'{w:.1f}' for w in walls)}; exit {[c for _, c, _ in runs]}); "
                  f"peak RSS: {shown}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
