"""When a server this run started dies, the run says so: which one (pid, URL), how it ended, its
log; it never tells the user to start a server of their own. And the embedded server's build
carries no AMX kernel (ggml's AMX path crashes at its first matrix product on CPUs with AMX)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_stack import ENTRY, _closed_port, _entry

from localeval.serving import servers


def test_a_url_the_user_named_that_does_not_answer_is_reported_not_replaced(tmp_path):
    """--stack auto starts the embedded stack for the default URL only: a --base-url the user
    gave is the server they want graded."""
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    result = _entry(["--stack", "auto", "--base-url", url], tmp_path)
    assert result.returncode == 2, result.stderr
    assert url in result.stderr and "--base-url" in result.stderr
    assert "drop --base-url" in result.stderr  # the way to the embedded model, if wanted
    assert "started " not in result.stdout and "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_the_installed_build_carries_no_amx_kernel():
    """The .env build flags reached the compiler (on a CPU with AMX, a native build without
    them compiles ggml_backend_amx_mul_mat, which crashes at the first completion)."""
    assert servers.ggml_amx_libraries() == []
    assert servers.amx_build_problem() is None


def test_an_amx_build_on_an_amx_cpu_is_refused_with_the_rebuild_command(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libggml-cpu.so.0").write_bytes(b"\0ELF..." + servers.AMX_KERNEL + b"\0")
    (lib / "libggml-base.so.0").write_bytes(b"\0ELF...\0")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8\n", encoding="ascii")
    assert servers.ggml_amx_libraries([tmp_path]) == [lib / "libggml-cpu.so.0"]
    assert servers.cpu_has_amx(cpuinfo)
    problem = servers.amx_build_problem(cpuinfo, [tmp_path])
    assert problem is not None and "libggml-cpu.so.0" in problem
    assert "PIP_NO_CACHE_DIR=1 pipenv run pip install --force-reinstall" in problem
    cpuinfo.write_text("flags\t\t: fpu avx512f avx512_vnni\n", encoding="ascii")
    assert not servers.cpu_has_amx(cpuinfo)
    assert servers.amx_build_problem(cpuinfo, [tmp_path]) is None  # no AMX: the kernels idle


def _children(parent: int, marker: str) -> list[int]:
    """The pids of `parent`'s child processes whose command line holds `marker`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and marker in cmdline:
            found.append(int(stat.parent.name))
    return found


def _llama_server_of(process: subprocess.Popen, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := _children(process.pid, "llama_cpp.server"):
            return found[0]
        assert process.poll() is None, "the run ended before it started the llama.cpp server"
        time.sleep(0.01)
    raise AssertionError("the run did not start the llama.cpp server")


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, ENTRY, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "how", "advice"),
    [
        (signal.SIGKILL, "SIGKILL (often the kernel's out-of-memory killer", "Out of memory"),
        (signal.SIGSEGV, "SIGSEGV (a crash)", "rebuild llama-cpp-python"),
    ],
)
def test_the_embedded_server_killed_while_it_loads_is_named_as_ours(tmp_path, sig, how, advice):
    run = _start(["--stack", "embedded", "--quiet"], tmp_path)
    pid = _llama_server_of(run)
    os.kill(pid, sig)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 3, err
    assert f"The llama.cpp server this run started (pid {pid}, at http://127.0.0.1:" in err
    assert f"was killed by signal {how}" in err and advice in err
    assert "LM Studio" not in err and "Traceback" not in err
    (kept,) = [line for line in err.splitlines() if line.startswith("The logs of the servers")]
    log = Path(kept.rpartition(" in ")[2]) / "llama.cpp server.log"
    assert log.is_file() and f"Its log is {log}" in err


@pytest.mark.slow
def test_the_embedded_server_crashing_mid_run_ends_the_run_at_once_with_answers_kept(tmp_path):
    data = tmp_path / "many.csv"
    rows = [f"What is {n} plus {n}?,{2 * n}" for n in range(1, 21)]
    data.write_text("inputs,ground_truth\n" + "\n".join(rows) + "\n", encoding="utf-8")
    db = tmp_path / ".mlflow_eval_cache" / "replies.sqlite"
    run = _start(["--stack", "embedded", "--data", str(data), "--max-tokens", "16"], tmp_path)
    pid = _llama_server_of(run)
    deadline = time.monotonic() + 300
    answered = 0
    while answered < 2 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.2)
        if db.exists():
            with sqlite3.connect(db) as con:  # the run writes each reply as it comes
                answered = con.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
    assert answered >= 2, "no reply was cached"
    os.kill(pid, signal.SIGSEGV)  # what the AMX kernels did at their first product
    killed = time.monotonic()
    _, err = run.communicate(timeout=120)
    assert time.monotonic() - killed < 60  # the other rows fail at once, no retry per row
    assert run.returncode == 3, err
    assert f"The llama.cpp server this run started (pid {pid}" in err
    assert "was killed by signal SIGSEGV (a crash)" in err and "during the run" in err
    assert "LM Studio" not in err and "Traceback" not in err
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM replies").fetchone()[0] >= answered
