"""Ours against Inspect AI on one running llama.cpp server (a script, not a test).

One llama-cpp-python server (Gemma 3 270M, the embedded model) and our YAML gateway in front of
it are started here; then, in turn, three pairs of: our entry script (`--stack external
--no-cache`, the candidate on the server, the judge through the gateway) and Inspect AI's
`inspect eval` (`generate` then `model_graded_fact`, both on the server), on the same
questions with the same --max-tokens. Prints each pair's wall times and their ratio, and our
judge's completion tokens (from the runs' metrics).

Inspect runs from its own virtualenv, bench/.venv-inspect (not the project's Pipfile):

    python3 -m venv bench/.venv-inspect && bench/.venv-inspect/bin/pip install inspect-ai==0.3.285
    .venv/bin/python bench/bench_inspect.py --pairs 3 --max-tokens 120
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localeval.calls.client import api_key  # noqa: E402
from localeval.serving import stack  # noqa: E402
from localeval.serving.servers import wait_ready  # noqa: E402

INSPECT = ROOT / "bench" / ".venv-inspect" / "bin" / "inspect"
TASK = ROOT / "bench" / "inspect" / "article_task.py"


def _ours(work: Path, llm: str, gateway: str, max_tokens: int, data: Path) -> tuple[float, str]:
    argv = [sys.executable, str(ROOT / "mlflow_evaluate.py"), "--stack", "external",
            "--model", stack.EMBEDDED_MODEL_ID, "--base-url", llm, "--gateway-url", gateway,
            "--data", str(data), "--max-tokens", str(max_tokens), "--no-cache", "--quiet",
            "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"our run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def _inspect(work: Path, llm: str, max_tokens: int, data: Path) -> float:
    env = {**os.environ, "LOCAL_BASE_URL": llm, "LOCAL_API_KEY": "local", "BENCH_DATA": str(data),
           "INSPECT_LOG_DIR": str(work / "inspect-logs")}  # fmt: skip
    model = f"openai-api/local/{stack.EMBEDDED_MODEL_ID}"
    # Inspect takes a task file relative to its working folder.
    argv = [str(INSPECT), "eval", TASK.name, "--model", model,
            "--max-tokens", str(max_tokens), "--no-log-samples", "--display", "none"]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=TASK.parent, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"inspect failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall


def _judge_tokens(work: Path) -> list[float]:
    """Each of our runs' judge completion tokens, from their metrics."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    runs = client.search_runs(["1"], order_by=["attribute.start_time ASC"])
    return [r.data.metrics.get("answer_similarity/v1/judge_completion_tokens", float("nan"))
            for r in runs]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "article_qa.csv")
    args = parser.parse_args()
    if not INSPECT.exists():
        parser.error(f"{INSPECT} not found: see this script's docstring to install Inspect AI")
    work = Path(tempfile.mkdtemp(prefix="bench-inspect-"))
    try:
        with ExitStack() as services:
            # The gateway's config names OPENAI_API_KEY; local servers take any key.
            env = {**os.environ, "OPENAI_API_KEY": api_key()}
            llm_service = stack.start_llm_server(work, env, services)
            wait_ready(llm_service, 300)
            config = yaml.safe_load((ROOT / "gateway_config.yaml").read_text())
            source = ROOT / "gateway_config.yaml"
            config = stack.embedded_judge_config(config, source, llm_service.url)
            (work / "gateway.yaml").write_text(yaml.safe_dump(config))
            gw_service = stack.start_gateway(work / "gateway.yaml", work, env, services)
            wait_ready(gw_service, 300)
            print(f"llama.cpp server {llm_service.url}, gateway {gw_service.url}", flush=True)
            pairs = []
            for k in range(args.pairs):
                ours, out = _ours(work, llm_service.url, gw_service.url, args.max_tokens, args.data)
                theirs = _inspect(work, llm_service.url, args.max_tokens, args.data)
                pairs.append((ours, theirs))
                print(f"pair {k + 1}: ours {ours:.1f} s, Inspect {theirs:.1f} s, "
                      f"ratio {ours / theirs:.2f}", flush=True)  # fmt: skip
            print("our judge's completion tokens per run:", _judge_tokens(work))
            print(out[out.find("=== Summary") :][:1200])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
