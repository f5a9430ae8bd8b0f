"""Conversations: multi-turn rows answered turn by turn with the dialogue so far, each turn judged
in its context, grouped as an MLflow session; rows without a reference not applicable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pytest
from conftest import evaluate
from fake_openai import Fault, FakeOpenAI

CONVERSATIONS = [
    {
        "id": "ui",
        "turns": ["What is MLflow?", "How do I start its UI?", "And on another port?"],
        "ground_truth": ["A platform.", "mlflow ui", ""],
    },
    {"id": "tea", "system_prompt": "Be brief.", "turns": ["Green or black tea?", "At night?"]},
]


def _write(path: Path, records: list[Any]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    return path


def _replies(body: dict[str, Any]) -> str:
    """The candidate answers each question with a text naming it; the judge gives a 4."""
    if body.get("model") in ("chat", "chat2"):
        return "score: 4\njustification: Fine."
    return f"Answer to: {body['messages'][-1]['content']}"


def test_each_turn_is_asked_with_the_dialogue_so_far(
    fake: FakeOpenAI, run_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.reply = _replies
    data = _write(tmp_path / "c.jsonl", CONVERSATIONS)
    code, out, err = evaluate(
        [*run_args, "--data", str(data), "--judge", "answer_relevance"], capsys
    )
    assert code == 0, out + err
    asked = [c["messages"] for c in fake.calls_for("fake-model")]
    assert len(asked) == 5
    third = next(m for m in asked if m[-1]["content"] == "And on another port?")
    assert [(m["role"], m["content"]) for m in third[1:]] == [
        ("user", "What is MLflow?"),
        ("assistant", "Answer to: What is MLflow?"),
        ("user", "How do I start its UI?"),
        ("assistant", "Answer to: How do I start its UI?"),
        ("user", "And on another port?"),
    ]
    night = next(m for m in asked if m[-1]["content"] == "At night?")
    assert night[0] == {"role": "system", "content": "Be brief."}
    # The judge of turn 3 reads the dialogue before it, the earlier answers fenced as data.
    judged = fake.calls_with("And on another port?", model="chat")
    assert len(judged) == 1
    prompt = judged[0]["messages"][0]["content"]
    assert "### User:\nHow do I start its UI?" in prompt
    assert "```\nAnswer to: How do I start its UI?\n```" in prompt
    assert prompt.index("Metric definition") < prompt.index("What is MLflow?")
