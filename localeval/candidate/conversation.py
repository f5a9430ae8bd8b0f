"""Conversations, asked as a chat client asks them: each turn with the dialogue so far (the
system prompt, the user's earlier turns and the candidate's own earlier answers).

A conversation of N turns is N rows (`Sample.turn` says which); these helpers walk the rows of
one conversation in order. A turn that fails ends its conversation: the later turns fail with
its reason, since a chat client would have nothing to continue from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ..types import Answer, Call, Sample


def turn_messages(system_prompt: str, sample: Sample) -> list[dict[str, str]]:
    """The chat messages of one row: a single question, or a turn after its dialogue (the row's
    own system prompt, if it has one, replaces the run's)."""
    turn = sample.turn
    system = turn.system_prompt if turn is not None and turn.system_prompt else system_prompt
    messages = [{"role": "system", "content": system}]
    if turn is not None:
        for question, reply in zip(turn.earlier, turn.replies):
            messages.append({"role": "user", "content": question})
            messages.append({"role": "assistant", "content": reply or ""})
    messages.append({"role": "user", "content": str(sample.input)})
    return messages


def conversations(samples: Sequence[Sample]) -> list[list[int]]:
    """The rows' indices grouped by conversation, each in turn order (a single question is a
    group of its own), in the order the conversations first appear."""
    groups: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        key = f"c:{sample.turn.conversation}" if sample.turn is not None else f"r:{i}"
        groups.setdefault(key, []).append(i)

    def number(i: int) -> int:
        turn = samples[i].turn
        return 0 if turn is None else turn.number

    return [sorted(group, key=number) for group in groups.values()]


def with_replies(samples: Sequence[Sample], replies: Sequence[str | None]) -> list[Sample]:
    """Each turn's row with the candidate's answers to the turns before it (what its judges
    see as the dialogue so far)."""
    out = list(samples)
    for group in conversations(samples):
        for pos, i in enumerate(group):
            turn = samples[i].turn
            if turn is not None:
                earlier = tuple(replies[j] for j in group[:pos])
                out[i] = replace(samples[i], turn=replace(turn, replies=earlier))
    return out


def failed_after(answer: Answer, number: int) -> str | None:
    """The reason the turns after a failed turn fail with, or None when it was answered."""
    return None if not answer.failed else f"turn {number} failed: {answer.error}"


def walk(
    samples: Sequence[Sample],
    group: Sequence[int],
    system_prompt: str,
    ask: Callable[[list[dict[str, str]]], Answer],
) -> list[Answer]:
    """One conversation's answers, turn by turn, each asked with the dialogue so far."""
    out: list[Answer] = []
    stopped: str | None = None
    for i in group:
        sample = samples[i]
        if stopped is not None:
            out.append(Answer(None, stopped, Call(time.time(), 0.0)))
            continue
        if sample.turn is not None:
            earlier = tuple(a.text for a in out)
            sample = replace(sample, turn=replace(sample.turn, replies=earlier))
        answer = ask(turn_messages(system_prompt, sample))
        out.append(answer)
        if sample.turn is not None:
            stopped = failed_after(answer, sample.turn.number)
    return out


def cached_replies(
    samples: Sequence[Sample], system_prompt: str, lookup: Callable[[list[dict[str, str]]], Any]
) -> list[str | None] | None:
    """Every row's answer as the reply cache holds it (`lookup(messages)` -> reply or None),
    walking each conversation as it would be asked; None when one is missing."""
    found: list[str | None] = [None] * len(samples)
    missing = False

    def ask(messages: list[dict[str, str]]) -> Answer:
        nonlocal missing
        reply = lookup(messages)
        if reply is None:
            missing = True
            return Answer(None, "not cached")
        return Answer(reply.text)

    for group in conversations(samples):
        for i, answer in zip(group, walk(samples, group, system_prompt, ask)):
            found[i] = answer.text
        if missing:
            return None
    return found
