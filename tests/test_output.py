"""The terminal report and progress: the headline first and last, compact rows, plain numbers,
progress lines without a terminal, and --help's defaults."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from conftest import evaluate
from typed_rows import graded_row

from localeval.calls import progress as progress_module
from localeval.calls.pool import map_ordered
from localeval.config.settings import build_parser
from localeval.outcome import Outcome
from localeval.output.present import paired, shorten
from localeval.output.terminal import COMPACT_ROWS, CUT, format_outcome
from localeval.types import (
    PARSE_FAILURE,
    Comparison,
    Dataset,
    JudgeInfo,
    ModelResult,
    ModelSpec,
    PairedComparison,
    RowResult,
)

KEY = "answer_similarity/v1"
LONG_ANSWER = "MLflow is a platform for the whole machine learning lifecycle. " * 6
UI = "Open the results in the MLflow UI:"


def _row(index: int, *, score: float | None = 4, error: str | None = None, why: str = "Fine.",
         answer: str = "A tool.") -> RowResult:  # fmt: skip
    """Row `index` graded by answer_similarity/v1; `error` fails it, `score=None` leaves it
    unscored (a parse failure whose raw reply is `why`)."""
    question = f"Question {index + 1}?"
    return graded_row(index, inputs=question, target="Target.", answer=answer, error=error,
                      score=score, justification=why, reason=PARSE_FAILURE)  # fmt: skip


def _outcome(rows: list[RowResult], model: str = "m", **result_fields) -> Outcome:
    metrics = {
        f"{KEY}/mean": 3.5, f"{KEY}/ci_low": 3.0, f"{KEY}/ci_high": 4.0,
        f"{KEY}/unscored_ratio": 0.25, "completion_tokens/total": 11834.0,
        "candidate/tokens_per_s": 41.27, "latency_s/mean": 0.5,
    }  # fmt: skip
    result = ModelResult(
        ModelSpec(model, "http://127.0.0.1:1/v1"),
        "run-1",
        metrics,
        rows,
        (JudgeInfo("answer_similarity", "v1", ("chat",)),),
        **result_fields,
    )
    data = Dataset(Path("data/qa.csv"), tuple(r.sample for r in rows), "digest")
    return Outcome(data, "sqlite:///mlflow.db", "7", [result], notes=["a note"])


def _sample_outcome(**result_fields) -> Outcome:
    return _outcome(
        [
            _row(0, answer=LONG_ANSWER, why="Close to the target. " * 10),
            _row(1, error="HTTP 500: scripted failure"),
            _row(2, score=None, why="I think it is fine. " * 40),
            _row(3, score=3),
        ],
        **result_fields,
    )


def _lines_before_ui(text: str) -> list[str]:
    return text[: text.index(UI)].rstrip().splitlines()


# ---- the report ------------------------------------------------------------------------------


def test_headline_opens_and_closes_the_report():
    """Regression: the judge's mean sat at line 12 of 335, and nothing summed up at the end."""
    out = format_outcome(_sample_outcome())
    head = out.splitlines()[:12]
    assert head[0] == "=== m on qa.csv (4 rows)"
    assert any("run run-1 in experiment 7" in line for line in head)
    assert any(line.split()[:4] == [KEY, "3.5", "[3,", "4]"] for line in head)
    assert any("failed rows: 1 of 4 after retries (candidate 1)" in line for line in head)
    tail = _lines_before_ui(out)[-8:]  # what `| tail` shows, the UI block aside
    assert any(line.split()[:2] == [KEY, "3.5"] for line in tail)
    assert any("2 of 4" in line for line in tail) and "note: a note" in tail
    assert out.rstrip().endswith("then http://127.0.0.1:5000/#/experiments/7")


def test_compact_rows_put_problems_first_and_cut_long_texts():
    out = format_outcome(_sample_outcome())
    order = [line.split()[0] for line in out.splitlines() if line.startswith("[")]
    assert order == ["[2]", "[3]", "[1]", "[4]"]  # failed, unscored, then the rest in order
    assert "FAILED: HTTP 500: scripted failure" in out
    assert LONG_ANSWER.strip() not in " ".join(out.split()) and "…" in out
    # An unscored reply keeps its 300 characters: it is what shows why the judge failed.
    assert "… (full reply in the MLflow run's eval table)" in " ".join(out.split())
    assert "Rows (1 failed, 1 unscored, 2 ok;" in out


def _listed(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines() if line.startswith("[")]


def test_compact_listing_of_a_big_run_is_capped_problems_first():
    """5,000 rows: the problems, then the first rows up to COMPACT_ROWS, then one line; never
    every row (the terminal printed all 5,000)."""
    rows = [_row(i) for i in range(5000)]
    rows[4000] = _row(4000, error="HTTP 500: scripted failure")
    rows[10] = _row(10, score=None, why="No score.")
    out = format_outcome(_outcome(rows))
    listed = _listed(out)
    assert len(listed) == COMPACT_ROWS
    assert listed[:3] == ["[4001]", "[11]", "[1]"]  # failed, unscored, then the rest in order
    assert "… 4,980 more rows: --rows all lists them, as do the run's report.html" in out
    assert "(1 failed, 1 unscored, 4998 ok; problems first, the first 20, texts cut;" in out
    assert len(out.splitlines()) < 150
    assert len(_listed(format_outcome(_outcome(rows), rows="all"))) == 5000


def test_compact_listing_says_how_many_problems_it_leaves_out():
    rows = [_row(i, error="HTTP 500: down") for i in range(25)] + [_row(25)]
    out = format_outcome(_outcome(rows))
    assert _listed(out) == [f"[{i}]" for i in range(1, COMPACT_ROWS + 1)]
    assert "… 6 more rows, 5 of them failed or unscored (--rows failed): --rows all" in out
    assert len(_listed(format_outcome(_outcome(rows), rows="failed"))) == 25  # uncapped


def test_a_small_run_lists_every_row_without_a_more_line():
    out = format_outcome(_outcome([_row(i) for i in range(COMPACT_ROWS)]))
    assert len(_listed(out)) == COMPACT_ROWS and "more rows" not in out
    assert "the first" not in out


@pytest.mark.parametrize(
    ("rows", "shown"),
    [
        pytest.param("all", ["[1]", "[2]", "[3]", "[4]"], id="all_in_order"),
        pytest.param("failed", ["[2]", "[3]"], id="failed_and_unscored"),
        pytest.param("none", [], id="none"),
    ],
)
def test_rows_option_chooses_the_listing(rows, shown):
    out = format_outcome(_sample_outcome(), rows=rows)
    assert [line.split()[0] for line in out.splitlines() if line.startswith("[")] == shown
    if rows == "all":
        assert LONG_ANSWER.strip() in " ".join(out.split())  # in full
    if rows == "none":
        assert out.count(f"  {KEY}  3.5") == 1  # nothing between: the headline once


def test_numbers_are_plain_and_every_metric_only_with_verbose():
    out = format_outcome(_sample_outcome())
    assert "candidate: 41.3 tokens/s" in out
    assert "completion_tokens/total" not in out and "e+" not in out
    verbose = format_outcome(_sample_outcome(), verbose=True)
    assert "completion_tokens/total" in verbose and "11834" in verbose and "e+" not in verbose


def test_undefined_metrics_warnings_and_unscored_verdicts_are_in_the_headline():
    outcome = _sample_outcome(
        undefined={f"{KEY}/self_consistency": "no row has two scored verdicts"},
        warnings=["the judge says one thing"],
    )
    outcome.results[0].metrics[f"{KEY}/unscored_verdict_ratio"] = 0.25
    out = format_outcome(outcome, rows="none", verbose=False)
    assert f"{KEY}/self_consistency — (no row has two scored verdicts)" in out
    assert "  warning: the judge says one thing" in out
    assert "unscored verdict ratio" in out and "0.25" in out


def test_a_judge_error_row_is_unscored_with_the_judge_to_blame():
    """Regression: it counted as a failed row in the headline and as unscored in the listing."""
    from dataclasses import replace

    from localeval.types import JUDGE_ERROR, Call, Judgement, Score, Verdict

    error = Score.unscored(JUDGE_ERROR, "judge call failed: HTTP 500", "HTTP 500")
    row = replace(_row(1), judgements={KEY: Judgement((Verdict("chat", 0, error, Call(0, 1)),))})
    out = format_outcome(_outcome([_row(0), row]), rows="failed")
    assert "failed rows: 0 of 2; unscored by a judge call that failed after retries: 1 (" in out
    assert f"({KEY} 1); re-run the same command to retry only them" in out
    assert "(0 failed, 1 unscored, 1 ok;" in out
    assert "[unscored: judge_error] judge call failed: HTTP 500" in out


def test_a_judge_without_a_verdict_on_a_row_shows_not_graded():
    """Regression: such a row printed "no score", a reason no verdict carries."""
    from dataclasses import replace

    from localeval.output.export import rows as export_rows

    outcome = _outcome([replace(_row(0), judgements={})])
    assert "[unscored: not_graded]" in format_outcome(outcome, rows="all")
    (record,) = export_rows(outcome)
    assert record[f"{KEY}/unscored_reason"] == "not_graded" and record[f"{KEY}/score"] is None


def test_shorten_ends_at_a_sentence_or_a_word():
    text = "First sentence is here and it runs on. " * 5
    cut = shorten(text, CUT)
    assert len(cut) <= CUT + 2 and cut.endswith("…")
    assert shorten("short text", CUT) == "short text"
    assert shorten("x" * 300, 120) == "x" * 120 + "…"


@pytest.mark.parametrize(
    ("result", "p_shown"),
    [
        pytest.param(PairedComparison(0.0, 0.0, 0.0, 0.0, 10), None, id="tie_no_p"),
        pytest.param(PairedComparison(-1.0, -1.5, -0.5, 0.0, 10), "0.00", id="worse_keeps_p"),
    ],
)
def test_a_tie_does_not_read_as_a_win(result, p_shown):
    """Regression: identical scores printed "P(b better) 0.00", which reads as "a is better"."""
    line = paired(Comparison("a", "b", KEY, result)).line
    if p_shown is None:
        assert "P(b better)" not in line and line.endswith(": no difference")
    else:
        assert f"P(b better) {p_shown}: worse" in line


def test_two_models_list_both_and_their_comparison():
    one, two = _sample_outcome(), _outcome([_row(i, score=2) for i in range(4)], model="other")
    one.results += two.results
    one.parent_run_id = "parent-1"
    pair = Comparison("m", "other", KEY, PairedComparison(-1.0, -1.5, -0.5, 0.0, 3))
    one.comparisons = [pair]
    out = format_outcome(one)
    assert out.startswith("=== 2 models on qa.csv (4 rows)\nmodels  m ")
    assert "comparison run parent-1" in out and "Comparison (model × metric)" in out
    assert "Rows of other (0 failed, 0 unscored, 4 ok;" in out
    tail = _lines_before_ui(out)
    assert tail[-1].startswith("  other vs m on answer_similarity/v1: -1")


# ---- progress --------------------------------------------------------------------------------


def _slow(item: int) -> int:
    time.sleep(0.02)
    return item * 2


def test_progress_lines_without_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "GAP_S", 0.0)  # rows of 20 ms: a line for each tenth
    assert map_ordered(_slow, list(range(20)), 2, desc="answers (m)") == [i * 2 for i in range(20)]
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("answers (m) 2/20, ") and "left" in lines[0]  # every tenth
    assert len(lines) == 10 and lines[-1].startswith("answers (m) 20/20 done in ")


def test_progress_speaks_every_few_seconds_while_a_row_is_slow(capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "EVERY_S", 0.1)
    map_ordered(lambda x: time.sleep(0.35) or x, [1, 2], 1, desc="judge j")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("judge j 0/2, 0.")  # before the first row is back
    assert lines[-1].startswith("judge j 2/2 done in ")


def test_a_fast_phase_says_only_done(capsys):
    map_ordered(_slow, list(range(20)), 4, desc="judge j")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("judge j 20/20 done in 0.")


def test_quiet_means_no_progress(capsys):
    map_ordered(_slow, [1, 2, 3], 2, desc="answers (m)", quiet=True)
    assert capsys.readouterr().err == ""


def test_progress_lines_give_the_time_left_and_where_it_stopped():
    now = [0.0]
    stream = io.StringIO()
    shown = progress_module.Lines("answers (m)", 200, stream, every_s=10, clock=lambda: now[0])
    for _ in range(20):  # a tenth of the rows, 5 s each
        now[0] += 5
        shown.update()
    now[0] += 10  # a slow row: a line after 10 s without one
    shown.tick()
    shown.close()
    assert stream.getvalue().splitlines() == [
        "answers (m) 20/200, 100 s, ~15 min 00 s left",
        "answers (m) 20/200, 110 s, ~16 min 30 s left",
        "answers (m) stopped at 20/200 after 110 s",
    ]


# ---- the command line ------------------------------------------------------------------------


def test_help_shows_one_default_per_option():
    text = " ".join(build_parser().format_help().split())
    assert "MLflow tracking URI (default: sqlite:///mlflow.db in the working folder, env " in text
    assert "default: None, env MLFLOW_TRACKING_URI" not in text
    assert "--rows ROWS" in text and "(default: compact)" in text and "--verbose" in text


def test_default_run_ends_with_the_headline(fake, run_args, capsys):
    code, out, _ = evaluate(run_args, capsys)
    assert code == 0
    tail = _lines_before_ui(out)[-8:]  # heading, model, table (2), failures, cost, speed, note
    assert "=== Summary" in tail and any(line.split()[:2] == [KEY, "4"] for line in tail)
    code, out, _ = evaluate(run_args + ["--rows", "none"], capsys)
    assert code == 0 and "What is Spark?" not in out and out.count(f"{KEY}  4") == 1


def test_rows_flag_rejects_an_unknown_listing(fake, run_args, capsys):
    code, _, err = evaluate(run_args + ["--rows", "some"], capsys)
    assert code == 2 and "compact, all, failed, none" in err


@pytest.mark.parametrize("rows", ["compact", "all", "failed", "none"])
def test_notes_are_printed_once_in_the_last_summary(rows):
    """A note is a paragraph: printed once, in the summary the user sees last."""
    out = format_outcome(_outcome([_row(i) for i in range(3)]), rows=rows)
    assert out.count("note: a note") == 1
    last = out.rfind("=== Summary")
    assert (out.index("note: a note") > last) if rows != "none" else last == -1
