"""What a whole run produced: every model's results, their comparisons (per judge and head to
head), the notes and the gate's failures; what the entry script prints, writes and maps to an
exit code. Built by the runner, read by the outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .judging.pairs import HeadToHead
from .types import Comparison, Dataset, JudgeInfo, ModelResult


@dataclass(frozen=True)
class Strength:
    """A version's Bradley-Terry strength from every head-to-head verdict, with its interval."""

    version: str
    score: float
    ci_low: float
    ci_high: float


@dataclass
class Outcome:
    """Everything the entry script prints, writes and maps to an exit code."""

    dataset: Dataset
    tracking_uri: str
    experiment_id: str
    results: list[ModelResult]
    parent_run_id: str | None = None
    notes: list[str] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    gate_failures: list[str] = field(default_factory=list)
    head_to_head: list[HeadToHead] = field(default_factory=list)  # --pairwise, each pair
    strengths: list[Strength] = field(default_factory=list)  # --pairwise, 3+ versions, best first
    separability: float | None = None  # share of version pairs whose strengths' intervals part

    @property
    def failed_rows(self) -> int:
        return sum(r.failed_rows for r in self.results)

    @property
    def judges(self) -> list[JudgeInfo]:
        """Every judge of every model, each once, in order."""
        seen: dict[str, JudgeInfo] = {}
        for result in self.results:
            for judge in result.judges:
                seen.setdefault(judge.key, judge)
        return list(seen.values())
