"""The types every module shares: what is asked (specs), what each row got (results), and the
comparisons between models (the whole run's `Outcome`, which also holds head-to-head results, is
in `outcome`). A leaf: it imports nothing of ours, so anything may import it.

One `RowResult` per row is the truth about a run; MLflow's results table, the traces, the
terminal, the HTML report and the exports are all rendered from it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

# Columns of the frame handed to mlflow.evaluate (and of the exports).
INPUTS = "inputs"
GROUND_TRUTH = "ground_truth"
CONTEXT = "context"
ANSWER = "answer"
# The candidate's extra output columns; mlflow.evaluate keeps them in its results table.
ANSWER_COLUMNS = ("candidate_error", "latency_s", "prompt_tokens", "completion_tokens", "cached")
# --output: the per-row file's format by its suffix.
ROW_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
# Grading-context names that mean our standard columns; any other name is a data column.
TARGETS_ROLE, CONTEXT_ROLE = "targets", "context"

# Why a verdict has no score and whose fault it is: the candidate's (no answer: the row failed) or
# the judge's (an answer it could not grade: unscored). Logged as they are: never rename one.
UnscoredReason = Literal["candidate_failed", "judge_error", "parse_failure", "out_of_range",
                         "injection_suspected", "not_graded", "not_applicable"]  # fmt: skip
Blame = Literal["candidate", "judge"]
BLAME: dict[UnscoredReason, Blame | None] = {
    "candidate_failed": "candidate",  # no answer after retries (no judge was asked)
    "judge_error": "judge",  # its call failed after retries (HTTP 5xx, timeout): a re-run asks
    "parse_failure": "judge",  # no score it reads: prose, empty, cut off by the token budget
    "out_of_range": "judge",  # a score off its scale ("8/10" on a 1-5 scale)
    "injection_suspected": "judge",  # its only verdict was copied from the answer: fooled
    "not_graded": "judge",  # none of its verdicts on the row (reports; a run grades every row)
    "not_applicable": None,  # the judge needs what the row lacks (a reference): nobody's fault
}
CANDIDATE_FAILED, JUDGE_ERROR, PARSE_FAILURE, OUT_OF_RANGE, INJECTION_SUSPECTED, NOT_GRADED, \
    NOT_APPLICABLE = get_args(UnscoredReason)  # fmt: skip
RowStatus = Literal["failed", "unscored", "ok"]
# How a judge's scored verdicts on a row (endpoints × repeats) make its score: their mean, or the
# most common grade, a tie to the worse one in the judge's sense (a split never flatters).
Combination = Literal["mean", "majority"]
COMBINATIONS: tuple[Combination, ...] = get_args(Combination)


# ---- what is asked ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A candidate model: its id on the server and the server's OpenAI-compatible base URL."""

    id: str
    base_url: str
    server_id: str | None = None  # a stable name for a server we started (the cache key)
    embedded: bool = False  # the embedded llama.cpp model (its answers follow a grammar)
    answer_col: str | None = None  # --answer-col: its answers are this data column's
    # A model that is another one with its own settings (the embedded model's second id): the
    # id the server knows it by, and the system prompt and temperature replacing the run's.
    served_as: str | None = None
    system_prompt: str | None = None
    temperature: float | None = None

    @property
    def served_id(self) -> str:
        return self.served_as or self.id


@dataclass(frozen=True)
class JudgeSpec:
    """A built-in judge by name, the gateway endpoint(s) it asks, and its own sampling."""

    name: str
    endpoints: tuple[str, ...]
    temperature: float | None = None  # None: --judge-temperature
    max_tokens: int | None = None  # None: --judge-max-tokens
    combine: Combination = "mean"  # how its verdicts on a row make the row's score

    @property
    def endpoint(self) -> str:
        return self.endpoints[0]


@dataclass(frozen=True)
class Threshold:
    """A --fail-under gate: the run fails when `metric` is below `value` (or missing)."""

    metric: str
    value: float


@dataclass(frozen=True)
class Turn:
    """Where a row sits in a conversation (one row per turn): the dialogue before it."""

    conversation: str  # the conversation's id (its traces' MLflow session)
    number: int  # 1-based
    count: int  # the conversation's turns
    earlier: tuple[str, ...] = ()  # the user's earlier turns
    replies: tuple[str | None, ...] = ()  # the candidate's answers to them, once asked
    system_prompt: str | None = None  # the row's own, replacing --system-prompt


@dataclass(frozen=True)
class Sample:
    """One evaluation row: the question, the expected answer and optional retrieval context."""

    id: str
    input: str
    target: str | None = None
    context: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    answers: dict[str, str | None] = field(default_factory=dict)  # --answer-col COL -> answer
    preference: str | None = None  # a person's pick of two answer columns: "a", "b" or "tie"
    labels: dict[str, float] = field(default_factory=dict)  # judge name -> a person's grade
    turn: Turn | None = None  # a turn of a conversation (None: a single question)

    @property
    def answer(self) -> str | None:
        """The answer to judge from the data (the first --answer-col), if any."""
        return next(iter(self.answers.values()), None)


@dataclass(frozen=True)
class Dataset:
    """Samples read from one file, with what identifies the file's content."""

    path: Path
    samples: tuple[Sample, ...]
    digest: str

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def has_targets(self) -> bool:
        return any(s.target for s in self.samples)

    @property
    def has_context(self) -> bool:
        return any(s.context for s in self.samples)


# ---- what each row got -----------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One LLM call as the run saw it: when, how long, the server's token usage."""

    started: float  # time.time() when the call was made (or looked up in the cache)
    latency_s: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached: bool = False
    finish_reason: str | None = None


@dataclass(frozen=True)
class Answer:
    """The candidate's answer to one row, or why there is none."""

    text: str | None
    error: str | None = None  # the failure after retries; None when answered
    call: Call | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class Score:
    """A judge's verdict on one row; without a `value` it could not grade, and `reason` says why."""

    value: float | None
    justification: str | None = None
    reason: UnscoredReason | None = None
    raw: str | None = None
    endpoints: tuple[int, int] | None = None  # a combination: (endpoints that scored, asked)

    def __post_init__(self) -> None:
        if (self.value is None) != (self.reason is not None):
            raise ValueError(f"no value, or a reason: {self.value!r}, {self.reason!r}")

    @classmethod
    def unscored(
        cls, reason: UnscoredReason, text: str | None = None, raw: str | None = None
    ) -> Score:
        """A verdict without a score: why (`reason`), the words shown for it, the reply read."""
        return cls(None, text, reason, raw)

    @property
    def scored(self) -> bool:
        return self.value is not None

    @property
    def blame(self) -> Blame | None:
        """Whose fault it is that there is no score (None: scored; an unknown reason: the judge)."""
        return None if self.reason is None else BLAME.get(self.reason, "judge")


@dataclass(frozen=True)
class Verdict:
    """One judge call's outcome: which endpoint and repeat, the score, and the call itself."""

    endpoint: str
    repeat: int
    score: Score
    call: Call | None = None  # None: no call was made (the candidate produced no answer)
    json: bool = False  # asked for a JSON verdict (else MLflow's text format)


@dataclass(frozen=True)
class Judgement:
    """One judge's grading of one row: every verdict (endpoints × repeats) and their combination."""

    verdicts: tuple[Verdict, ...]
    combine: Combination = "mean"
    greater_is_better: bool = True  # whose worse grade a majority's tie takes

    def by_endpoint(self) -> dict[str, list[Score]]:
        out: dict[str, list[Score]] = {}
        for v in self.verdicts:
            out.setdefault(v.endpoint, []).append(v.score)
        return out

    @property
    def combined(self) -> Score:
        """The row's score, its scored verdicts' `combine`; an endpoint without a score is named
        in the text and counted in `endpoints` (scored, asked), never silently dropped."""
        scores = [v.score for v in self.verdicts]
        scored = [s.value for s in scores if s.value is not None]
        first = next((s for s in scores if s.scored), scores[0])
        text, per = first.justification or "", self.by_endpoint()
        of = (sum(any(s.scored for s in ss) for ss in per.values()), len(per))
        if len(scores) > 1:
            summary = " | ".join(
                f"{e}: " + ",".join("—" if s.value is None else f"{s.value:g}" for s in ss)
                for e, ss in per.items()
            )
            silent = f", {of[1] - of[0]} of {of[1]} endpoints gave no score" * (of[0] < of[1])
            text = f"[{summary}; {self.combine}{silent}] {text}"
        if not scored:
            return replace(Score.unscored(first.reason, text, first.raw), endpoints=of)  # type: ignore[arg-type]
        counts = Counter(scored)  # a tie among the most common grades: the worse one
        tied = [v for v, n in counts.items() if n == max(counts.values())]
        majority = min(tied) if self.greater_is_better else max(tied)
        value = majority if self.combine == "majority" else sum(scored) / len(scored)
        return Score(value, text, None, first.raw, of)

    @property
    def call_failed(self) -> bool:
        """A judge call failed after retries (judge_error: a re-run asks it again)."""
        return any(v.score.reason == JUDGE_ERROR for v in self.verdicts)


@dataclass(frozen=True)
class RowResult:
    """Everything one row got: the sample, the answer (or failure), every judge's verdicts."""

    index: int  # 0-based position in the dataset
    sample: Sample
    answer: Answer
    judgements: dict[str, Judgement] = field(default_factory=dict)  # judge key -> its grading
    # Per-row values of MLflow's heuristic metrics (`exact_match/v1`, ...), read from its table.
    metrics: dict[str, float | None] = field(default_factory=dict)

    @property
    def status(self) -> RowStatus:
        """Whose fault a missing score is (`BLAME`): 'failed', no answer to grade (the candidate's);
        'unscored', a judge could not grade the answer (its call failed, say), else 'ok'."""
        blames = {j.combined.blame for j in self.judgements.values()}
        if self.answer.failed or "candidate" in blames:
            return "failed"
        return "unscored" if "judge" in blames else "ok"

    @property
    def failed(self) -> bool:
        """No answer to grade (status 'failed'); a judge's failed call leaves the row unscored."""
        return self.status == "failed"

    @property
    def judge_failed(self) -> bool:
        """A judge call failed after retries on this row (a re-run asks it again)."""
        return any(j.call_failed for j in self.judgements.values())


@dataclass(frozen=True)
class JudgeInfo:
    """What a report needs to know about a judge: its metric key and scale."""

    name: str
    version: str
    endpoints: tuple[str, ...]
    greater_is_better: bool = True
    low: int = 1
    high: int = 5

    @property
    def key(self) -> str:
        """The metric prefix MLflow uses: `<name>/<version>`."""
        return f"{self.name}/{self.version}"


@dataclass(frozen=True)
class HumanAgreement:
    """A judge against a person's grades on the rows both graded.

    `metrics` are named as the run logs them after the judge's key (`human_kappa`, ...);
    `undefined` says, per metric that could not be computed, why.
    """

    grades: tuple[int, ...]  # the scale, e.g. (1, 2, 3, 4, 5)
    matrix: tuple[tuple[int, ...], ...]  # rows: the judge's grade, columns: the person's
    metrics: dict[str, float]
    undefined: dict[str, str]
    differ: tuple[tuple[int, float, float], ...]  # (row index, judge, person), widest first


@dataclass
class ModelResult:
    """One candidate model's evaluation: its MLflow run, aggregates and per-row results."""

    model: ModelSpec
    run_id: str
    metrics: dict[str, float]
    rows: list[RowResult]
    judges: tuple[JudgeInfo, ...] = ()
    vs_baseline: list[Comparison] = field(default_factory=list)  # --baseline: this run vs it
    human: dict[str, HumanAgreement] = field(default_factory=dict)  # judge key -> vs people
    undefined: dict[str, str] = field(default_factory=dict)  # metric -> why it has no value
    warnings: list[str] = field(default_factory=list)  # why a score may not deserve trust
    traces: dict[int, str] = field(default_factory=dict)  # row index -> its trace's id

    @property
    def failed_rows(self) -> int:
        return sum(r.failed for r in self.rows)

    def scores(self, judge_key: str) -> list[float | None]:
        """Each row's combined score for one judge (None: unscored)."""
        return [
            r.judgements[judge_key].combined.value if judge_key in r.judgements else None
            for r in self.rows
        ]


@dataclass(frozen=True)
class PairedComparison:
    """b against a on the rows both scored: mean of b - a, its interval, P(b better)."""

    mean_diff: float
    ci_low: float
    ci_high: float
    p_b_better: float  # share of bootstrap resamples whose mean difference is > 0
    n_pairs: int

    @property
    def verdict(self) -> str:
        """'better', 'worse', 'no difference' (every pair equal), 'not distinguishable' or 'not
        comparable' (no pair), for b against a on a score where higher is better."""
        if self.n_pairs == 0 or math.isnan(self.mean_diff):
            return "not comparable"
        if self.ci_low == self.ci_high == 0:
            return "no difference"
        if self.ci_low > 0:
            return "better"
        if self.ci_high < 0:
            return "worse"
        return "not distinguishable"


@dataclass(frozen=True)
class Comparison:
    """Model b against model a on one judge's per-row scores (paired bootstrap)."""

    a: str
    b: str
    judge: str  # the judge key, `<name>/<version>`
    result: PairedComparison
    greater_is_better: bool = True

    @property
    def verdict(self) -> str:
        """b against a: 'better' or 'worse' in the judge's own sense of better."""
        verdict = self.result.verdict
        if not self.greater_is_better:
            verdict = {"better": "worse", "worse": "better"}.get(verdict, verdict)
        return verdict
