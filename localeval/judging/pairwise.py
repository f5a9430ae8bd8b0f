"""Head to head, the judge: two versions' answers to one row, asked in both orders.

A judge is shown answer A then answer B and picks one or calls a tie; each pair is asked twice,
each answer first once (what the two replies make: `pairs`). Its reply is MT-Bench's text
format (`[[A]]`, `[[B]]`, `[[C]]` for a tie) or, for the embedded stand-in, a JSON verdict.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

from ..calls.client import CallFailed, Endpoint, call_of
from ..calls.pool import map_ordered
from ..calls.transport import Transport
from ..prompts import (
    ANSWER_PREFERENCE_V1,
    JUSTIFICATION_CHARS,
    PREFERENCE_CRITERIA_V1,
    PREFERENCE_GRAMMAR_V1,
    PREFERENCE_JSON_V1,
    PREFERENCE_REFERENCE_V1,
    PREFERENCE_TEXT_V1,
)
from ..types import Answer, Call, Sample
from .grading import GradingOptions
from .pairs import OrderVerdict, PairRow, PairwiseRubric, Pick, Winner
from .verdict import quote_answer

_TAG = re.compile(r"\[\[\s*([ABC])\s*\]\]")
_PICKS: dict[str, Pick] = {"A": "A", "B": "B", "C": "tie"}
_DECODER = json.JSONDecoder(strict=False)


def render(
    question: str,
    first: str,
    second: str,
    reference: str | None,
    use_json: bool,
    criteria: str = PREFERENCE_CRITERIA_V1,
) -> str:
    """The judge's prompt for one order: `first` is shown as answer A (`criteria`: a custom
    rubric's, in place of ours)."""
    return ANSWER_PREFERENCE_V1.format(
        criteria=criteria,
        verdict_format=PREFERENCE_JSON_V1 if use_json else PREFERENCE_TEXT_V1,
        question=question,
        reference=PREFERENCE_REFERENCE_V1.format(reference=reference) if reference else "",
        first=quote_answer(first),
        second=quote_answer(second),
    )


def parse_text(reply: str | None) -> OrderVerdict:
    """MT-Bench's format: an explanation, then exactly one of [[A]], [[B]], [[C]]. Several
    different tags are no verdict (the judge changed its mind or quoted the format)."""
    if not reply or not reply.strip():
        return OrderVerdict(pick=None, reason="no_verdict", raw=reply)
    tags = {m.group(1) for m in _TAG.finditer(reply)}
    if not tags:
        return OrderVerdict(pick=None, reason="no_verdict", raw=reply)
    if len(tags) > 1:
        return OrderVerdict(pick=None, reason="several_verdicts", raw=reply)
    (tag,) = tags
    explanation = _TAG.sub("", reply).strip() or None
    return OrderVerdict(pick=_PICKS[tag], explanation=explanation, raw=reply)


def parse_json(reply: str | None) -> OrderVerdict:
    """`{"verdict": "A"|"B"|"C", "explanation": ...}`, the first JSON object in the reply; the
    text format's tags when there is none."""
    text = reply or ""
    pos = text.find("{")
    while pos != -1:
        try:
            obj, _ = _DECODER.raw_decode(text, pos)
        except ValueError:
            pos = text.find("{", pos + 1)
            continue
        if isinstance(obj, dict) and str(obj.get("verdict", "")).strip().upper() in _PICKS:
            explanation = obj.get("explanation")
            return OrderVerdict(
                pick=_PICKS[str(obj["verdict"]).strip().upper()],
                explanation=str(explanation) if explanation is not None else None,
                raw=reply,
            )
        break
    return parse_text(reply)


class PairwiseJudge:
    """Asks one gateway endpoint which of two answers is better, each row in both orders, with
    the cache, retries and concurrency of every judge call (`calls.transport`)."""

    def __init__(
        self,
        endpoint: str,
        options: GradingOptions,
        transport: Transport,
        temperature: float,
        max_tokens: int,
        rubric: PairwiseRubric | None = None,
    ) -> None:
        self.rubric = rubric or PairwiseRubric()
        self.version = self.rubric.key
        self.name = self.rubric.endpoint or endpoint
        self.options = options
        self.transport = transport
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.use_json = options.judge_format == "json"

    def endpoint(self) -> Endpoint:
        extra: dict[str, Any] = {}
        if self.use_json and self.options.grammar:
            extra["grammar"] = PREFERENCE_GRAMMAR_V1.format(chars=JUSTIFICATION_CHARS)
        elif self.use_json:
            extra["response_format"] = {"type": "json_object"}
        return Endpoint(
            self.options.gateway_url.rstrip("/") + "/v1",
            self.name,
            self.temperature,
            self.max_tokens,
            extra,
            self.options.server_ids.get(self.name),
        )

    def ask(self, sample: Sample, first: str, second: str) -> OrderVerdict:
        """One order: `first` shown as answer A. The cache key holds both answers and the order
        (they are in the prompt)."""
        criteria = self.rubric.criteria or PREFERENCE_CRITERIA_V1
        prompt = render(sample.input, first, second, sample.target, self.use_json, criteria)
        client = self.transport.client(self.endpoint())
        started = time.time()
        try:
            reply = client.complete([{"role": "user", "content": prompt}])
        except CallFailed as exc:
            call = Call(started, time.time() - started)
            return OrderVerdict(pick=None, reason="judge_error", raw=exc.reason, call=call)
        verdict = (parse_json if self.use_json else parse_text)(reply.text)
        call = call_of(reply, started)
        if verdict.pick is None and reply.finish_reason == "length":
            return OrderVerdict(pick=None, reason="cut_off", raw=reply.text, call=call)
        return OrderVerdict(
            pick=verdict.pick,
            explanation=verdict.explanation,
            reason=verdict.reason,
            raw=reply.text,
            call=call,
        )

    def judge_row(
        self, sample: Sample, a: Answer, b: Answer, human: Winner | None = None
    ) -> PairRow:
        """Both orders of one row (`human`: a person's pick, carried to the figures)."""
        if a.text is None or b.text is None or a.failed or b.failed:
            missing = OrderVerdict(pick=None, reason="no_answer")
            return PairRow(a_first=missing, b_first=missing, human=human)
        return PairRow(
            a_first=self.ask(sample, a.text, b.text),
            b_first=self.ask(sample, b.text, a.text),
            length_a=len(a.text),
            length_b=len(b.text),
            human=human,
        )

    def judge_all(
        self,
        samples: Sequence[Sample],
        answers_a: Sequence[Answer],
        answers_b: Sequence[Answer],
        desc: str,
        human: Sequence[Winner | None] | None = None,
    ) -> list[PairRow]:
        """Every row of a pair of versions, `options.concurrency` rows at a time (`human`: a
        person's pick per row)."""
        return map_ordered(
            lambda i: self.judge_row(
                samples[i], answers_a[i], answers_b[i], human[i] if human else None
            ),
            range(len(samples)),
            self.options.concurrency,
            desc,
            quiet=self.options.quiet,
        )
