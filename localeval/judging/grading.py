"""Asking the judges: each row's grading prompt through the gateway, every endpoint and repeat,
read with the tolerant parser into typed verdicts; and the aggregates over them.

The call goes through the same client the candidate uses (the gateway's OpenAI-compatible route,
`model` = the endpoint name), so it shares retries, the reply cache and the concurrency knob.
"Could not grade" is a verdict with its reason, never a silent NaN.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

from ..calls.client import CallFailed, Endpoint, call_of
from ..calls.pool import map_ordered
from ..calls.transport import Transport
from ..prompts import (
    ANSWER_QUOTING_VERSION,
    DIALOGUE,
    DIALOGUE_TURN,
    JSON_VERDICT,
    JSON_VERDICT_VERSION,
    JUSTIFICATION_CHARS,
    LAYOUT_MLFLOW,
    VERDICT_GRAMMAR,
    VERDICT_GRAMMAR_VERSION,
)
from ..types import (
    CANDIDATE_FAILED,
    CONTEXT_ROLE,
    INJECTION_SUSPECTED,
    JUDGE_ERROR,
    NOT_APPLICABLE,
    PARSE_FAILURE,
    TARGETS_ROLE,
    Answer,
    Call,
    Judgement,
    Sample,
    Score,
    Verdict,
)
from .judges import JudgeDef
from .verdict import (
    parse_json_verdict,
    parse_verdict,
    quote_answer,
    still_thinking,
    strip_echo,
)

# A verdict cut off by its token budget is read as it stands: MLflow's text format and our JSON
# one ask for the score first, so it is usually there. Without one, the judge is asked once more,
# with this many times the budget, only when it was still reasoning (`still_thinking`): a judge
# that rambles past its score only rambles longer. (Every such verdict was asked again with 4×:
# on the comparison with Inspect AI of bench/bench_inspect.py half of our time went to re-asks
# that were cut off again.)
RAISED_BUDGET = 2


@dataclass(frozen=True, kw_only=True)
class GradingOptions:
    """Run-wide judging options."""

    gateway_url: str
    judge_format: str = "text"  # "text" or "json" (auto is resolved before)
    repeats: int = 1
    server_ids: dict[str, str] = field(default_factory=dict)  # endpoint -> what answers there
    upstreams: dict[str, str] = field(default_factory=dict)  # endpoint -> the gateway's model
    concurrency: int = 4
    quiet: bool = False
    layout: str = LAYOUT_MLFLOW  # the order of the prompt's parts (prompts.LAYOUTS)
    grammar: bool = False  # JSON verdicts constrained by a llama.cpp grammar (the embedded judge)
    judge_concurrency: dict[str, int] = field(default_factory=dict)  # judge key -> its own
    judge_turns: str = "all"  # in conversations: grade every turn, or the last one only


def grading_context(judge: JudgeDef, sample: Sample) -> dict[str, str]:
    """The values of the judge's grading-context columns for one row."""
    out = {}
    for column in judge.grading_context_columns:
        if column == TARGETS_ROLE:
            out[column] = sample.target or ""
        elif column == CONTEXT_ROLE:
            out[column] = sample.context or ""
        else:
            out[column] = str(sample.metadata.get(column, ""))
    return out


def in_context(sample: Sample) -> str:
    """The question as the judge reads it: a turn after the first comes after the dialogue so
    far (the user's turns, the candidate's answers quoted as data)."""
    turn = sample.turn
    if turn is None or not turn.earlier:
        return sample.input
    dialogue = "".join(
        DIALOGUE_TURN.format(question=q, answer=quote_answer(a or ""))
        for q, a in zip(turn.earlier, turn.replies)
    )
    return DIALOGUE.format(dialogue=dialogue, question=sample.input)


@dataclass(frozen=True)
class PromptVersion:
    """What makes a judge's prompt what it is (a run compared with a baseline must share it),
    logged as `judge_version/<name>` = `judge|layout|quoting|verdict`."""

    judge: str  # the metric's key, `<name>/<version>`
    layout: str  # the order of the prompt's parts (prompts.LAYOUTS)
    quoting: str  # how the answer under test is quoted (prompts.ANSWER_QUOTING_VERSION)
    verdict: str  # the verdict format: "text", or the JSON verdict's version (+ the grammar's)

    # What each part is, in the words of --baseline's message.
    WORDS: ClassVar[dict[str, str]] = {
        "judge": "metric version", "layout": "prompt layout", "quoting": "answer quoting",
        "verdict": "verdict format",
    }  # fmt: skip

    @property
    def value(self) -> str:
        """The logged string; a run from before answers were quoted logged no quoting part."""
        quoting = [self.quoting] if self.quoting else []
        return "|".join([self.judge, self.layout, *quoting, self.verdict])

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, logged: str) -> PromptVersion:
        """A logged `judge_version/<name>`: four parts, or three (judge|layout|verdict) from a
        run before answers were quoted (quoting ""); ValueError for anything else."""
        parts = logged.split("|")
        if len(parts) == 3:
            parts.insert(2, "")
        if len(parts) != 4 or not all(parts[:2]) or not parts[3]:
            raise ValueError(f"{logged!r} is not judge|layout|quoting|verdict")
        return cls(*parts)

    def differences(self, other: PromptVersion) -> list[tuple[str, str, str]]:
        """(part, this one's, the other's) for each part that differs."""
        mine, theirs = asdict(self), asdict(other)
        return [(name, mine[name], theirs[name]) for name in mine if mine[name] != theirs[name]]

    @classmethod
    def of(
        cls, judge: JudgeDef, judge_format: str, layout: str, grammar: bool = False
    ) -> PromptVersion:
        """A judge's as this run asks it: its format (text, json) and the grammar, if any."""
        verdict = JSON_VERDICT_VERSION if judge_format == "json" else "text"
        if judge_format == "json" and grammar:
            verdict += f"+{VERDICT_GRAMMAR_VERSION}"
        return cls(judge.key, layout, ANSWER_QUOTING_VERSION, verdict)


def prompt_version(judge: JudgeDef, judge_format: str, layout: str, grammar: bool = False) -> str:
    """The judge's `PromptVersion` as logged (params, traces)."""
    return PromptVersion.of(judge, judge_format, layout, grammar).value


def spent(first: Call, second: Call | None) -> Call:
    """Two calls for one verdict as one: both their times and tokens, the second's ending."""
    if second is None:
        return first

    def total(a: int | None, b: int | None) -> int | None:
        return None if a is None and b is None else (a or 0) + (b or 0)

    return Call(
        first.started,
        first.latency_s + second.latency_s,
        total(first.prompt_tokens, second.prompt_tokens),
        total(first.completion_tokens, second.completion_tokens),
        first.cached and second.cached,
        second.finish_reason,
    )


def _cut_off_before_score(score: Score, finish_reason: str | None) -> bool:
    """The token budget ended the reply before the judge gave a score it could be read by."""
    return score.reason == PARSE_FAILURE and finish_reason == "length"


class Grader:
    """Grades rows for one judge: every endpoint it names, `repeats` times each."""

    def __init__(self, judge: JudgeDef, options: GradingOptions, transport: Transport) -> None:
        self.judge = judge
        self.options = options
        self.transport = transport
        # A server that refused response_format once will refuse it again: text from then on.
        self._json_refused = False

    def endpoint(self, name: str, repeat: int, use_json: bool, raised: bool = False) -> Endpoint:
        # A distinct seed per repeat: K real samples, each cached under its own key.
        extra: dict[str, Any] = {"seed": repeat} if self.options.repeats > 1 else {}
        if use_json and self.options.grammar:
            extra["grammar"] = VERDICT_GRAMMAR.format(
                low=self.judge.low, high=self.judge.high, chars=JUSTIFICATION_CHARS
            )
        elif use_json:
            extra["response_format"] = {"type": "json_object"}
        budget = self.judge.max_tokens * (RAISED_BUDGET if raised else 1)
        return Endpoint(
            self.options.gateway_url.rstrip("/") + "/v1",
            name,
            self.judge.temperature,
            budget,
            extra,
            self.options.server_ids.get(name),
        )

    @property
    def version(self) -> str:
        options = self.options
        return prompt_version(self.judge, options.judge_format, options.layout, options.grammar)

    def prompt(self, sample: Sample, answer: str, use_json: bool) -> str:
        context = grading_context(self.judge, sample)
        form = JSON_VERDICT.format(low=self.judge.low, high=self.judge.high) if use_json else ""
        return self.judge.render(in_context(sample), answer, context, self.options.layout, form)

    def not_applicable(self, sample: Sample) -> str | None:
        """Why this judge does not grade the row, or None: it compares with a reference the row
        lacks (--require-reference stops at such a row instead), or a turn other than the last
        under --judge-turns last."""
        turn = sample.turn
        if self.options.judge_turns == "last" and turn is not None and turn.number < turn.count:
            return f"--judge-turns last: turn {turn.number} of {turn.count} is not graded"
        if TARGETS_ROLE in self.judge.grading_context_columns and not sample.target:
            return f"{self.judge.name} compares with a reference answer; this row has none"
        return None

    def _ask(
        self, sample: Sample, answer: str, endpoint: str, repeat: int, raised: bool = False
    ) -> Verdict:
        use_json = self.options.judge_format == "json" and not self._json_refused
        messages = [{"role": "user", "content": self.prompt(sample, answer, use_json)}]
        client = self.transport.client(self.endpoint(endpoint, repeat, use_json, raised))
        started = time.time()
        try:
            reply = client.complete(messages)
        except CallFailed as exc:
            if use_json and exc.reason.startswith("HTTP 400"):
                # The server refused response_format: fall back to reading text verdicts.
                self._json_refused = True
                return self._ask(sample, answer, endpoint, repeat)
            score = Score.unscored(JUDGE_ERROR, f"judge call failed: {exc.reason}", exc.reason)
            call = Call(started, time.time() - started)
            return Verdict(endpoint, repeat, score, call, json=use_json)
        score, call = self._read(reply.text, answer, use_json), call_of(reply, started)
        if not _cut_off_before_score(score, reply.finish_reason):
            return Verdict(endpoint, repeat, score, call, json=use_json)
        if not raised and still_thinking(reply.text):
            again = self._ask(sample, answer, endpoint, repeat, raised=True)
            return replace(again, call=spent(call, again.call))  # the verdict cost both calls
        budget = self.judge.max_tokens
        what = (
            f"cut off by the judge's token budget before a score, again with {RAISED_BUDGET}× its "
            f"{budget} tokens (it was still reasoning)"
            if raised
            else f"cut off by the judge's {budget}-token budget before a score; not asked again as "
            "it was not still reasoning (give it more room with --judge-max-tokens if it needs it)"
        )
        return Verdict(endpoint, repeat, Score.unscored(PARSE_FAILURE, what, reply.text), call,
                       json=use_json)  # fmt: skip

    def _read(self, reply: str, answer: str, use_json: bool) -> Score:
        """The judge's verdict, never one it copied from the answer under test: copied lines are
        set aside; a verdict only there is unscored (injection_suspected)."""
        parse = parse_json_verdict if use_json else parse_verdict
        low, high = self.judge.low, self.judge.high
        rest = strip_echo(reply, answer)
        if rest is None:
            return parse(reply, low, high)
        own = parse(rest, low, high)
        if own.scored:
            return Score(own.value, own.justification, None, reply)
        why = "the reply repeats a verdict written in the answer under test, and gives no other"
        return Score.unscored(INJECTION_SUSPECTED, why, reply)

    def cached(self, sample: Sample, answer: str, lookup: Callable[..., Any]) -> bool:
        """Whether every verdict this row needs is in the cache (`lookup(endpoint, messages)`
        returns the stored reply or None), as `_ask` would look for them."""
        if self.not_applicable(sample) is not None:
            return True
        use_json = self.options.judge_format == "json"
        messages = [{"role": "user", "content": self.prompt(sample, answer, use_json)}]
        for endpoint in self.judge.endpoints:
            for repeat in range(self.options.repeats):
                reply = lookup(self.endpoint(endpoint, repeat, use_json), messages)
                if reply is None:
                    return False
                score = self._read(reply.text, answer, use_json)
                if _cut_off_before_score(score, reply.finish_reason) and still_thinking(reply.text):
                    raised = self.endpoint(endpoint, repeat, use_json, raised=True)
                    if lookup(raised, messages) is None:
                        return False
        return True

    def grade(self, sample: Sample, answer: Answer) -> Judgement:
        """Every verdict for one row; a row without an answer is unscored without a call, a row
        the judge does not apply to is not applicable without one."""
        why = self.not_applicable(sample)
        if why is not None:
            score = Score.unscored(NOT_APPLICABLE, why)
            return Judgement(
                tuple(Verdict(e, 0, score) for e in self.judge.endpoints),
                self.judge.combine,
                self.judge.greater_is_better,
            )
        verdicts = []
        for endpoint in self.judge.endpoints:
            for repeat in range(self.options.repeats):
                if answer.failed or answer.text is None:
                    score = Score.unscored(CANDIDATE_FAILED, "the candidate produced no answer")
                    verdicts.append(Verdict(endpoint, repeat, score))
                else:
                    verdicts.append(self._ask(sample, answer.text, endpoint, repeat))
        return Judgement(tuple(verdicts), self.judge.combine, self.judge.greater_is_better)

    def grade_all(
        self,
        samples: Sequence[Sample],
        answers: Sequence[Answer],
        on_done: Callable[[int, Judgement], None] | None = None,
    ) -> list[Judgement]:
        return map_ordered(
            lambda pair: self.grade(*pair),
            list(zip(samples, answers)),
            self.options.judge_concurrency.get(self.judge.key, self.options.concurrency),
            desc=f"judge {self.judge.name}",
            quiet=self.options.quiet,
            on_done=on_done,
        )


def verdict_records(rows: Sequence[Judgement]) -> list[dict[str, Any]]:
    """Every verdict, for the run's `judge_verdicts/<name>.json`."""
    return [
        {
            endpoint: [
                {"score": s.value, "reason": s.reason, "justification": s.justification,
                 "raw": s.raw}
                for s in scores
            ]
            for endpoint, scores in j.by_endpoint().items()
        }
        for j in rows
    ]  # fmt: skip
