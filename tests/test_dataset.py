"""Datasets from files: every format, Japanese text, and errors that name file, row and column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localeval import Columns, load_dataset
from localeval.errors import DataError

ROWS = [
    {
        "inputs": "MLflowとは何ですか?",
        "ground_truth": "機械学習のプラットフォームです。",
        "context": "c1",
    },
    {"inputs": "What is Spark?", "ground_truth": "A distributed engine.", "context": "c2"},
]


def _write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".csv":
        import csv

        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    elif path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), "utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl", ".parquet"])
def test_every_format_reads_the_same_samples(tmp_path, suffix):
    dataset = load_dataset(_write(tmp_path / f"d{suffix}", ROWS), need_context=True)
    assert [s.input for s in dataset.samples] == ["MLflowとは何ですか?", "What is Spark?"]
    assert dataset.samples[0].target == "機械学習のプラットフォームです。"
    assert dataset.samples[1].context == "c2"
    assert dataset.has_context and dataset.has_targets and len(dataset.digest) == 12


def test_column_mapping_and_metadata(tmp_path):
    rows = [{"q": "What?", "a": "That.", "ctx": "here", "tag": "x"}]
    dataset = load_dataset(_write(tmp_path / "d.jsonl", rows), Columns("q", "a", "ctx"))
    sample = dataset.samples[0]
    assert (sample.input, sample.target, sample.context) == ("What?", "That.", "here")
    assert sample.metadata == {"tag": "x"}


def test_empty_ground_truth_allowed_when_no_judge_needs_it(tmp_path):
    rows = [{"inputs": "What?", "ground_truth": ""}]
    dataset = load_dataset(_write(tmp_path / "d.csv", rows), need_target=False)
    assert dataset.samples[0].target is None and not dataset.has_targets


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "needles"),
    [
        pytest.param(
            "d.csv",
            "question,ground_truth\nq,a\n",
            {},
            ["'inputs'", "--input-col"],
            id="missing_input_column",
        ),
        pytest.param(
            "d.csv",
            "inputs,ground_truth\nq,a\n,b\n",
            {},
            ["row 2", "'inputs'", "empty"],
            id="empty_input",
        ),
        pytest.param(
            "d.csv", "inputs,ground_truth\nq,\n", {}, ["row 1", "'ground_truth'"], id="empty_target"
        ),
        pytest.param(
            "d.csv",
            "inputs,ground_truth\nq,a\n",
            {"need_context": True, "needed_by": {"context": "faithfulness"}},
            ["'context'", "faithfulness"],
            id="judge_needs_context",
        ),
        pytest.param(
            "d.jsonl",
            '{"inputs": "q", "ground_truth": "a"}\n{broken\n',
            {},
            ["line 2", "not valid JSON"],
            id="bad_jsonl_line",
        ),
        pytest.param("d.json", '{"inputs": "q"}', {}, ["list of records"], id="json_not_a_list"),
        pytest.param("d.json", "[1, 2", {}, ["not valid JSON"], id="bad_json"),
        pytest.param("d.txt", "x", {}, ["unsupported file type"], id="unknown_suffix"),
        pytest.param("d.csv", "inputs,ground_truth\n", {}, ["has no rows"], id="no_rows"),
        pytest.param("d.parquet", "not parquet", {}, ["not a readable Parquet"], id="bad_parquet"),
    ],
)
def test_bad_data_names_file_row_and_column(tmp_path, name, content, kwargs, needles):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_dataset(path, **kwargs)
    message = str(err.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message


def test_wrong_encoding_is_named(tmp_path):
    path = tmp_path / "sjis.csv"
    path.write_bytes("inputs,ground_truth\nMLflowとは?,答え\n".encode("shift_jis"))
    with pytest.raises(DataError, match="not valid UTF-8"):
        load_dataset(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope.csv")
