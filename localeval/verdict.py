"""Reading a judge's reply into a score, tolerantly, or saying explicitly why it could not."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

# Why a row has no score; every unscored row carries one of these.
PARSE_FAILURE = "parse_failure"
OUT_OF_RANGE = "out_of_range"
JUDGE_ERROR = "judge_error"
CANDIDATE_FAILED = "candidate_failed"


@dataclass(frozen=True)
class Score:
    """A judge's verdict on one row; `value` is None when it could not grade (see `reason`)."""

    value: float | None
    justification: str | None = None
    reason: str | None = None
    raw: str | None = None

    @property
    def scored(self) -> bool:
        return self.value is not None


_FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL | re.IGNORECASE)
_OBJECT = re.compile(r"\{[^{}]*\}", re.DOTALL)
# "score: 4", "**Score:** 4", "Score = 4/5", "score 4" at a line start (after markup).
_SCORE_LINE = re.compile(
    r"^[\s>*_#-]*score[\s*_]*[:=]?[\s*_]*(-?\d+(?:\.\d+)?)\s*(?:/\s*\d+)?",
    re.IGNORECASE | re.MULTILINE,
)
_JUSTIFICATION = re.compile(
    r"^[\s>*_#-]*(?:justification|reasoning|reason|explanation)[\s*_]*[:=][\s*_]*(.+)",
    re.IGNORECASE | re.MULTILINE | re.DOTALL,
)


def _from_json(text: str) -> tuple[float | None, str | None] | None:
    candidates = [m.group(1) for m in _FENCE.finditer(text)]
    candidates += [text.strip()]
    candidates += [m.group(0) for m in _OBJECT.finditer(text)]
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(data, dict):
            lowered = {str(k).lower(): v for k, v in data.items()}
            if "score" in lowered:
                try:
                    score = float(lowered["score"])
                except (TypeError, ValueError):
                    return None, None
                justification = lowered.get("justification") or lowered.get("reasoning")
                return score, (str(justification) if justification is not None else None)
    return None


def parse_verdict(text: str | None, low: int = 1, high: int = 5) -> Score:
    """Read `score` and `justification` from a judge's reply.

    Accepts JSON (bare or in a code fence) and `score: N` lines in the usual markups. With several
    score lines the last one counts: judges reason first and conclude last, and a quoted answer
    comes before the conclusion.
    """
    if not text or not text.strip():
        return Score(None, None, PARSE_FAILURE, text)
    found = _from_json(text)
    if found is not None:
        score, justification = found
    else:
        matches = list(_SCORE_LINE.finditer(text))
        if not matches:
            return Score(None, text.strip(), PARSE_FAILURE, text)
        score = float(matches[-1].group(1))
        after = text[matches[-1].end() :]
        just = _JUSTIFICATION.search(after) or _JUSTIFICATION.search(text)
        justification = just.group(1).strip() if just else (after.strip() or text.strip())
    if score is None:
        return Score(None, justification or text.strip(), PARSE_FAILURE, text)
    if not low <= score <= high:
        return Score(None, justification, OUT_OF_RANGE, text)
    return Score(score, justification, None, text)
