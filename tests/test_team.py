"""A big file split over machines: `--shard K/N` evaluates one contiguous part as its own run,
`--tag` tags the parts' runs the same (or puts them under one parent run)."""

from __future__ import annotations

import csv
import json

import mlflow
import pytest
from conftest import evaluate
from mlflow import MlflowClient


def _data(path, rows: int):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["inputs", "ground_truth", "answer"])
        writer.writerows(
            [f"Question {i}?", f"Target {i}.", f"Answer {i}."] for i in range(1, rows + 1)
        )
    return path


def test_shards_cover_the_file_once_tagged_under_one_parent(
    fake, run_args, tracking_uri, tmp_path, capsys, request
):
    data = _data(tmp_path / "qa.csv", 7)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(request.node.name) or client.get_experiment(
        client.create_experiment(request.node.name)
    )
    parent = client.create_run(experiment.experiment_id, run_name="nightly").info.run_id
    ids, runs = [], []
    for part in (1, 2, 3):
        out = tmp_path / f"part{part}.jsonl"
        args = run_args + ["--data", str(data), "--answer-col", "answer", "--shard", f"{part}/3",
                           "--tag", "job=nightly", "--tag", f"mlflow.parentRunId={parent}",
                           "--output", str(out)]  # fmt: skip
        code, stdout, err = evaluate(args, capsys)
        assert code == 0, stdout + err
        records = [json.loads(line) for line in out.read_text().splitlines()]
        ids.append([r["id"] for r in records])
        runs.append(records[0]["run_id"])
    # 7 rows in 3 parts: rows 1-2, 3-4, 5-7; each row once, its id its row number in the file.
    assert ids == [["1", "2"], ["3", "4"], ["5", "6", "7"]]
    assert fake.chat_calls == 7  # one verdict per row, over the three runs
    mlflow.set_tracking_uri(tracking_uri)
    found = mlflow.search_runs(
        [experiment.experiment_id], filter_string="tags.job = 'nightly'", output_format="list"
    )
    assert sorted(r.info.run_id for r in found) == sorted(runs)
    for run_id, part in zip(runs, ("1/3", "2/3", "3/3")):
        run = client.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent  # nested under it in the UI
        assert run.data.params["shard"] == part
        assert run.data.params["dataset_rows"] == str(len(ids[int(part[0]) - 1]))
    digests = {client.get_run(r).data.params["dataset_digest"] for r in runs}
    assert len(digests) == 3  # --baseline last compares a part with the same part


def test_several_models_keep_their_parent_and_tag_it(fake, run_args, tracking_uri, capsys):
    fake.models = ("fake-model", "fake-model-2")
    args = run_args + ["--model", "fake-model-2", "--tag", "job=cmp",
                       "--tag", "mlflow.parentRunId=0123456789abcdef"]  # fmt: skip
    code, out, err = evaluate(args, capsys)
    assert code == 0, out + err
    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(
        search_all_experiments=True, filter_string="tags.job = 'cmp'", output_format="list"
    )
    top = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == "0123456789abcdef"]
    children = [r for r in runs if r not in top]
    assert len(top) == 1 and len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {top[0].info.run_id}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--shard", "3/2"], "--shard: '3/2' is not K/N with 1 <= K <= N"),
        (["--shard", "two"], "--shard: 'two' is not K/N"),
        (["--tag", "nightly"], "--tag: 'nightly' is not KEY=VALUE"),
        (["--shard", "1/9"], "has 2 rows, too few for --shard 1/9: part 1 would be empty"),
    ],
)
def test_bad_shard_or_tag_exit_2_before_any_call(fake, run_args, capsys, flags, message):
    code, out, err = evaluate(run_args + flags, capsys)
    assert code == 2, out + err
    assert message in err and "Traceback" not in err
    assert fake.chat_calls == 0
