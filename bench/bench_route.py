"""Benchmark: one judge endpoint spread over two servers by an AI Gateway traffic-split route.

Two fake OpenAI-compatible servers that serve one request at a time (`slots=1`, like a laptop's
LM Studio), the real `mlflow gateway` started by our stack from a config with two routes: `solo`
(all verdicts to server A) and `chat` (50/50 over A and B). The same evaluation (pre-answered
rows, one judge, no cache, no traces) runs through each; the judge phase is measured on the
servers' own clocks, from the first verdict started to the last one done.

    .venv/bin/python bench/bench_route.py --rows 128 --latency-ms 50 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fake_openai import FakeOpenAI  # noqa: E402
from gateway_routes import two_server_routes  # noqa: E402

VERDICT = "score: 4\njustification: The answer covers the main points of the target."


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _data(path: Path, rows: int) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["inputs", "ground_truth", "answer"])
        writer.writerows([f"Question {i}?", f"Target {i}.", f"Answer {i}."] for i in range(rows))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="per verdict")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENAI_API_KEY", "local")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    from mlflow_evaluate import main as evaluate

    latency = args.latency_ms / 1000
    phases: dict[str, list[float]] = {"solo": [], "chat": []}
    walls: dict[str, list[float]] = {"solo": [], "chat": []}
    with (
        tempfile.TemporaryDirectory(prefix="bench-route-") as tmp,
        FakeOpenAI(models=("model-a",), reply=VERDICT, latency_s=latency, slots=1) as a,
        FakeOpenAI(models=("model-b",), reply=VERDICT, latency_s=latency, slots=1) as b,
    ):
        work = Path(tmp)
        config = two_server_routes(work / "gateway.yaml", a.url, b.url)
        data = _data(work / "qa.csv", args.rows)
        for repeat in range(args.repeat):
            for route in ("solo", "chat"):
                for server in (a, b):
                    server.spans.clear()
                    server.max_in_flight = 0
                flags = ["--stack", "auto", "--gateway-config", str(config),
                         "--gateway-url", f"http://127.0.0.1:{_free_port()}",
                         "--data", str(data), "--answer-col", "answer", "--judge-endpoint", route,
                         "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}",
                         "--experiment", f"bench-route-{route}", "--no-cache", "--no-traces",
                         "--rows", "none", "--quiet"]  # fmt: skip
                sink = io.StringIO()
                started = time.perf_counter()
                with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                    code = evaluate(flags)
                walls[route].append(time.perf_counter() - started)
                if code != 0:
                    print(sink.getvalue())
                    return code
                spans = [(s, e) for server in (a, b) for s, e, _ in server.spans]
                phases[route].append(max(e for _, e in spans) - min(s for s, _ in spans))
                served = f"A {len(a.spans)}, B {len(b.spans)}"
                print(
                    f"  #{repeat + 1} {route}: judge phase {phases[route][-1]:.2f} s "
                    f"(verdicts {served}; max in flight A {a.max_in_flight}, "
                    f"B {b.max_in_flight}), wall {walls[route][-1]:.1f} s"
                )
    solo, chat = statistics.median(phases["solo"]), statistics.median(phases["chat"])
    ideal = args.rows * latency
    print(
        f"\n{args.rows} verdicts x {args.latency_ms:g} ms, each server one request at a time "
        f"(one server's ideal {ideal:.2f} s, two servers' {ideal / 2:.2f} s), medians of "
        f"{args.repeat}:\n  one server (route solo): judge phase {solo:.2f} s, "
        f"wall {statistics.median(walls['solo']):.1f} s\n  two servers (route chat): judge "
        f"phase {chat:.2f} s, wall {statistics.median(walls['chat']):.1f} s\n  ratio "
        f"{chat / solo:.2f} (the gateway picks each call's server at random: about 0.5 to 0.6)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
