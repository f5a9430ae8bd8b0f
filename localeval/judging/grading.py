"""Asking the judges: each row's grading prompt through the gateway, every endpoint and repeat,
read with the tolerant parser into typed verdicts; and the aggregates over them.

The call goes through the same client the candidate uses (the gateway's OpenAI-compatible route,
`model` = the endpoint name), so it shares retries, the reply cache and the concurrency knob.
"Could not grade" is a verdict with its reason, never a silent NaN.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from .. import stats
from ..calls.client import CallFailed, Endpoint, call_of
from ..calls.pool import map_ordered
from ..calls.transport import Transport
from ..prompts import (
    ANSWER_QUOTING_VERSION,
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
    TARGETS_ROLE,
    Answer,
    Call,
    Judgement,
    Sample,
    Score,
    Verdict,
)
from .judges import JudgeDef
from .verdict import parse_json_verdict, parse_verdict, strip_echo

# A verdict cut off by the judge's token budget before its score is asked once more with this
# many times the budget.
RAISED_BUDGET = 4


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
        return self.judge.render(sample.input, answer, context, self.options.layout, form)

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
        score = self._read(reply.text, answer, use_json)
        if not score.scored and reply.finish_reason == "length" and not raised:
            # Cut off before it said a score: once more with room (a judge that reasons first).
            return self._ask(sample, answer, endpoint, repeat, raised=True)
        return Verdict(endpoint, repeat, score, call_of(reply, started), json=use_json)

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
        use_json = self.options.judge_format == "json"
        messages = [{"role": "user", "content": self.prompt(sample, answer, use_json)}]
        for endpoint in self.judge.endpoints:
            for repeat in range(self.options.repeats):
                reply = lookup(self.endpoint(endpoint, repeat, use_json), messages)
                if reply is None:
                    return False
                score = self._read(reply.text, answer, use_json)
                if not score.scored and reply.finish_reason == "length":
                    raised = self.endpoint(endpoint, repeat, use_json, raised=True)
                    if lookup(raised, messages) is None:
                        return False
        return True

    def grade(self, sample: Sample, answer: Answer) -> Judgement:
        """Every verdict for one row; a row without an answer is unscored without a call."""
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


# ---- aggregates -------------------------------------------------------------------------------


def aggregate(
    values: Sequence[float | None], aggregations: Sequence[str] = stats.DEFAULT_AGGREGATIONS
) -> dict[str, float]:
    """The chosen aggregations over the scored rows, their 95% bootstrap interval, and the
    share of rows left unscored (excluded from everything else)."""
    scored = np.array([v for v in values if v is not None], dtype=float)
    out = {"unscored_ratio": 1 - len(scored) / len(values) if values else 0.0}
    if not len(scored):
        return out
    out.update({name: float(stats.AGGREGATIONS[name](scored)) for name in aggregations})
    low, high = stats.bootstrap_ci(
        list(scored), confidence=stats.CONFIDENCE, n_resamples=stats.RESAMPLES, seed=stats.SEED
    )
    out["ci_low"], out["ci_high"] = float(low), float(high)
    return out


def aggregates(
    judge: JudgeDef, rows: Sequence[Judgement], repeats: int
) -> tuple[dict[str, float], dict[str, str]]:
    """A judge's aggregates (MLflow's, plus unscored shares, CI, agreement, failures, usage),
    and for each one that cannot be computed, why (it is then left out, never made up)."""
    out = aggregate([j.combined.value for j in rows], judge.aggregations)
    undefined: dict[str, str] = {}
    if "mean" not in out:
        undefined["mean"] = f"the judge scored none of the {len(rows)} rows"
    asked = [v.score for j in rows for v in j.verdicts if v.call is not None]
    if asked:  # every verdict asked of the judge, all repeats and endpoints
        out["unscored_verdict_ratio"] = sum(not s.scored for s in asked) / len(asked)
    if repeats > 1:
        per_endpoint = [
            [s.value for s in scores] for j in rows for scores in j.by_endpoint().values()
        ]
        consistency = stats.self_consistency(per_endpoint)
        if consistency == consistency:
            out["self_consistency"] = consistency
        else:
            undefined["self_consistency"] = (
                f"no row has two scored verdicts of one endpoint (of {repeats} asked per row)"
            )
        spreads = [s for s in map(stats.spread, per_endpoint) if s is not None]
        if spreads:
            out["mean_spread"] = float(sum(spreads) / len(spreads))
    if len(judge.endpoints) > 1:
        name, value, why = _agreement(rows, judge.endpoints)
        if why is None:
            out[name] = value
        else:
            undefined[name] = why
    out["failed_rows"] = float(sum(j.call_failed for j in rows))  # a call of an endpoint failed
    if len(judge.endpoints) > 1:  # rows scored, but by fewer of its endpoints than were asked
        counts = [j.combined.endpoints or (0, 0) for j in rows]
        out["partial_rows"] = float(sum(0 < scored < asked for scored, asked in counts))
    calls = [v.call for j in rows for v in j.verdicts if v.call is not None]
    completion = sum(c.completion_tokens or 0 for c in calls)
    latency = sum(c.latency_s for c in calls if not c.cached)
    out["judge_prompt_tokens"] = float(sum(c.prompt_tokens or 0 for c in calls))
    out["judge_completion_tokens"] = float(completion)
    if latency > 0:
        out["judge_tokens_per_s"] = completion / latency
    return out, undefined


def _agreement(
    rows: Sequence[Judgement], endpoints: tuple[str, ...]
) -> tuple[str, float, str | None]:
    """Agreement between the endpoints: (metric name, value, why it is undefined or None)."""

    # Each endpoint's per-row mean over its repeats; kappa wants the first repeat's integer grade.
    def mean(scores: list[Score]) -> float | None:
        vals = [s.value for s in scores if s.value is not None]
        return sum(vals) / len(vals) if vals else None

    def grade(score: Score) -> float | None:  # kappa's categories are the integer grades
        return None if score.value is None else float(round(score.value))

    by_endpoint = [j.by_endpoint() for j in rows]
    if len(endpoints) == 2:
        a = [grade(r[endpoints[0]][0]) for r in by_endpoint]
        b = [grade(r[endpoints[1]][0]) for r in by_endpoint]
        kappa = stats.cohen_kappa_quadratic(a, b)
        pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
        if kappa == kappa:
            return "agreement_kappa", kappa, None
        if not pairs:
            return "agreement_kappa", kappa, "no row was scored by both judges"
        return (
            "agreement_kappa",
            kappa,
            (
                f"both judges gave one single grade on all {len(pairs)} rows scored by both: "
                "agreement cannot be told from chance"
            ),
        )
    matrix = [[mean(r[e]) for e in endpoints] for r in by_endpoint]
    alpha = stats.krippendorff_alpha(matrix, level="interval")
    why = None if alpha == alpha else "no variation among the judges' scores, or no row two scored"
    return "agreement_alpha", alpha, why


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
