"""Benchmark a llama-cpp-python build (a script, not a test): the embedded Gemma 3 270M model's
prompt and decode speed, in this process, with the build that `import llama_cpp` finds.

To compare builds, unpack each wheel into a folder and put it first on the path:

    PYTHONPATH=/tmp/build-b .venv/bin/python bench/bench_build.py [--runs 5]

It prints the library's folder, whether it carries ggml's AMX kernels, ggml's system info line
(the instruction sets compiled in), then the median of `--runs` runs of: a 512-token prompt
evaluated from an empty context (prompt tokens/s), and 128 tokens decoded one at a time after it
(decode tokens/s). Same settings as the embedded server: n_ctx 4096, 256-token batches.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT_TOKENS = 512
DECODE_TOKENS = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import llama_cpp

    from localeval.serving import servers, stack

    folder = Path(llama_cpp.__file__).parent
    print(f"llama_cpp {llama_cpp.__version__} from {folder}")
    amx = servers.ggml_amx_libraries([folder])
    print(f"AMX kernels: {', '.join(p.name for p in amx) if amx else 'none'}")
    print(llama_cpp.llama_print_system_info().decode().strip())

    llm = llama_cpp.Llama(
        model_path=str(stack.embedded_model_path()),
        n_ctx=stack.EMBEDDED_N_CTX,
        n_batch=stack.EMBEDDED_N_BATCH,
        n_ubatch=stack.EMBEDDED_N_BATCH,
        logits_all=False,
        verbose=False,
    )
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    tokens = llm.tokenize(text.encode())[:PROMPT_TOKENS]
    assert len(tokens) == PROMPT_TOKENS, "README.md is shorter than the prompt"
    prompt_rates, decode_rates = [], []
    for _ in range(args.runs):
        llm.reset()  # eval() drops the cache from position 0: nothing reused between runs
        started = time.perf_counter()
        llm.eval(tokens)
        prompt_rates.append(PROMPT_TOKENS / (time.perf_counter() - started))
        started = time.perf_counter()
        for _ in range(DECODE_TOKENS):
            llm.eval([llm.sample(temp=0.0)])
        decode_rates.append(DECODE_TOKENS / (time.perf_counter() - started))
    print(f"{'runs':<8}{'prompt tokens/s':>18}{'decode tokens/s':>18}")
    print(
        f"{args.runs:<8}{statistics.median(prompt_rates):>18.0f}"
        f"{statistics.median(decode_rates):>18.1f}"
    )


if __name__ == "__main__":
    main()
