"""Reading a judge's reply into a score, tolerantly, or saying explicitly why it could not.

Two readers share one set of rules: `parse_verdict` for MLflow's text format (`score:` then
`justification:` lines) and `parse_json_verdict` for `--judge-format json`. The score is read only
from the judge's own structure, never from material the judge quotes (the answer under test may
contain "score: 5"); see `parse_verdict` for the rule.
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any, NamedTuple

from ..types import OUT_OF_RANGE, PARSE_FAILURE, Score


class _Found(NamedTuple):
    """A verdict located in the reply; `value` None means a score field that holds no number."""

    value: float | None
    out_of: int | None  # the judge's own scale, from "4/5" or "4 out of 5"
    justification: str | None


_NUMBER = r"-?\d+(?:\.\d+)?(?!\.?\d)"
_OUT_OF = r"[ \t*_]*(?:/|out[ \t]+of)[ \t*_]*(?P<den>\d+)"
_SCORE_LABEL = r"(?:(?:final|overall)[ \t]+)?(?:score|rating)|スコア"
_JUST_LABEL = r"justification|reasoning|reason|explanation|rationale|理由"
# A score line: the label at a line start (after list or emphasis markup), a separator or a line
# break, then the number: "score: 4", "**Score:** 4/5", "Score (1-5) = 4", "## Score\n4".
# A rubric echo such as "- Score 1: The output has little..." has no separator, so it never matches.
_SCORE_LINE = re.compile(
    rf"^[ \t*_#+-]*(?P<label>{_SCORE_LABEL})(?:[ \t]*\([^)\n]*\))?[ \t*_]*"
    rf"(?:[:=：][ \t*_]*(?:\n[ \t*_]*)?|\n[ \t*_]*)(?P<num>{_NUMBER})(?:{_OUT_OF})?",
    re.IGNORECASE | re.MULTILINE,
)
_JUST_LINE = re.compile(
    rf"^[ \t*_#+-]*(?:{_JUST_LABEL})[ \t*_]*(?:[:=：]|[ \t*_]*$)[ \t*_]*",
    re.IGNORECASE | re.MULTILINE,
)
_JUST_INLINE = re.compile(rf"(?:{_JUST_LABEL})[ \t*_]*[:=：][ \t*_]*", re.IGNORECASE)
_NUMBER_TEXT = re.compile(rf"\s*(?P<num>{_NUMBER})(?:{_OUT_OF})?\s*", re.IGNORECASE)
# A reply cut off by max_tokens inside its JSON: readable only if the score is the first key,
# so nothing the judge wrote (or quoted) comes before it.
_JSON_HEAD = re.compile(
    rf"\A\{{\s*[\"']?(?:score|rating)[\"']?\s*:\s*[\"']?(?P<num>{_NUMBER})(?:{_OUT_OF})?",
    re.IGNORECASE,
)
_JSON_HEAD_JUST = re.compile(rf"[\"'](?:{_JUST_LABEL})[\"']\s*:\s*[\"'](?P<text>.*)", re.I | re.S)
_WHOLE_FENCE = re.compile(r"\A(```|~~~)[^\n]*\n(?P<body>.*?)\n?[ \t]*\1\Z", re.DOTALL)
_FENCE = re.compile(r"(```|~~~).*?(?:\1|\Z)", re.DOTALL)
_BLOCKQUOTE = re.compile(r"^[ \t]*>.*$", re.MULTILINE)
# Reasoning models (Qwen3, DeepSeek-R1) think before answering; drafts there are not the verdict.
_THINK = re.compile(r"\A<(think|thinking)>.*?(?:</\1>|\Z)", re.DOTALL | re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think(?:ing)?>", re.IGNORECASE)
_NOT_THINKING = re.compile(r"score|rating|スコア|[{\"“「`>]", re.IGNORECASE)
# strict=False: local models put raw newlines inside JSON strings.
_DECODER = json.JSONDecoder(strict=False)
_JSON_KEYS_SCORE = ("score", "rating")
_JSON_KEYS_JUST = ("justification", "reasoning", "reason", "explanation", "rationale")


def parse_verdict(text: str | None, low: int = 1, high: int = 5) -> Score:
    """Read `score` and `justification` from a judge's reply in MLflow's text format.

    Tolerates JSON (bare, fenced, embedded), `score: 4`, `**Score:** 4/5`, `Score = 4`, a score
    after reasoning, a `<think>` block. Rule: a reply that opens with a verdict (a JSON object or
    a score line) is read from it, and the rest is justification even if it quotes "score: 5";
    otherwise quoted material (code fences, `>` lines, text in double quotes) is skipped and the
    last score line followed by a justification line counts, else the last score line, since
    judges that reason first conclude last; a JSON object in prose is read only failing those.
    A denominator other than `high` ("8/10") or a score outside [low, high] is OUT_OF_RANGE.
    """
    return _parse(text, low, high, json_first=False)


def parse_json_verdict(text: str | None, low: int = 1, high: int = 5) -> Score:
    """Read a verdict asked for as `{"score": int, "justification": str}` (`--judge-format json`).

    A reply opening with a JSON verdict is read from it; otherwise the last JSON object with a
    score anywhere (fenced or in prose) wins over score lines; without one, the reply is read
    with `parse_verdict`'s text rules.
    """
    return _parse(text, low, high, json_first=True)


def _parse(text: str | None, low: int, high: int, json_first: bool) -> Score:
    if text is None or not text.strip():
        return Score.unscored(PARSE_FAILURE, None, text)
    body = _unwrap_fence(_strip_thinking(text.strip()))
    if not body:
        return Score.unscored(PARSE_FAILURE, text.strip(), text)
    found = _opening_json(body)
    if found is None and json_first:
        found = _last_embedded_json(body)
    if found is None:
        found = _text_verdict(body)
    if found is None and not json_first:
        found = _last_embedded_json(body)
    if found is None:
        return Score.unscored(PARSE_FAILURE, body, text)
    if found.value is None:
        return Score.unscored(PARSE_FAILURE, found.justification or body, text)
    if (found.out_of is not None and found.out_of != high) or not low <= found.value <= high:
        return Score.unscored(OUT_OF_RANGE, found.justification, text)
    return Score(found.value, found.justification, None, text)


def still_thinking(text: str | None) -> bool:
    """Whether a reply cut off by its token budget stopped before the judge's verdict could come:
    nothing but whitespace (a server that returns the reasoning apart, in `reasoning_content`),
    or inside a `<think>` block never closed. Only such a reply is worth asking again with more
    room; one that rambles past where its score should be only rambles longer."""
    body = (text or "").strip()
    opened = re.match(r"<(think|thinking)>", body, re.IGNORECASE)
    return not body or (opened is not None and f"</{opened.group(1).lower()}>" not in body.lower())


def _strip_thinking(body: str) -> str:
    if _THINK.match(body):
        return _THINK.sub("", body, count=1).strip()
    # Templates that open the block in the prompt leave only "</think>" in the reply. Honoured only
    # when nothing before it looks like a verdict or a quotation: an answer quoted in a
    # justification (text or JSON) may contain the tag to make us skip the judge's real verdict.
    close = _THINK_CLOSE.search(body)
    if close and not _NOT_THINKING.search(body, 0, close.start()):
        return body[close.end() :].strip()
    return body


def _unwrap_fence(body: str) -> str:
    # A whole reply in one code fence is the judge's own structure, not a quotation.
    whole = _WHOLE_FENCE.match(body)
    return whole.group("body").strip() if whole else body


# ---- JSON ------------------------------------------------------------------------------------


def _opening_json(body: str) -> _Found | None:
    if not body.startswith("{"):
        return None
    try:
        obj, _ = _DECODER.raw_decode(body)
    except (ValueError, RecursionError):
        pass
    else:  # a reply that opens with a verdict object: what follows is not the verdict
        return _from_object(obj)
    try:  # a Python dict: single quotes, trailing commas
        return _from_object(ast.literal_eval(body))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    head = _JSON_HEAD.match(body)
    if head is None:
        return None
    just = _JSON_HEAD_JUST.search(body, head.end())
    text = just.group("text").rstrip(" \t\n\"'}") if just else None
    return _Found(float(head.group("num")), _int(head.group("den")), text or None)


def _last_embedded_json(body: str) -> _Found | None:
    # Top-level objects only: after an object is read, scanning resumes past its end, so an object
    # quoted inside a verdict's justification string is never read as a verdict.
    last = None
    pos = body.find("{")
    while pos != -1:
        try:
            obj, end = _DECODER.raw_decode(body, pos)
        except (ValueError, RecursionError):
            pos = body.find("{", pos + 1)
            continue
        found = _from_object(obj)
        last = found or last
        pos = body.find("{", end)
    return last


def _from_object(obj: Any) -> _Found | None:
    if not isinstance(obj, dict):
        return None
    fields = {str(k).strip().lower(): v for k, v in obj.items()}
    key = next((k for k in _JSON_KEYS_SCORE if k in fields), None)
    if key is None:
        return None
    just = next((fields[k] for k in _JSON_KEYS_JUST if fields.get(k) is not None), None)
    justification = (str(just).strip() or None) if just is not None else None
    value, out_of = _number(fields[key])
    return _Found(value, out_of, justification)


def _number(value: Any) -> tuple[float | None, int | None]:
    if isinstance(value, bool):  # bool is an int to Python; `true` is not a score
        return None, None
    if isinstance(value, int | float):
        return (float(value), None) if math.isfinite(value) else (None, None)
    if isinstance(value, str) and (m := _NUMBER_TEXT.fullmatch(value)):
        return float(m.group("num")), _int(m.group("den"))
    return None, None


def _int(text: str | None) -> int | None:
    return int(text) if text is not None else None


# ---- text ------------------------------------------------------------------------------------


def _text_verdict(body: str) -> _Found | None:
    opening = _SCORE_LINE.match(body)
    if opening:
        return _from_line(body, opening)
    quoted = _quoted_mask(body)
    lines = [m for m in _SCORE_LINE.finditer(body) if not quoted[m.start("label")]]
    if not lines:
        return None
    blocks = [m for m in lines if _justification_follows(body, m)]
    return _from_line(body, (blocks or lines)[-1])


def _from_line(body: str, m: re.Match[str]) -> _Found:
    return _Found(float(m.group("num")), _int(m.group("den")), _line_justification(body, m))


def _justification_follows(body: str, m: re.Match[str]) -> bool:
    """The score line carries a justification label, or the next non-blank line starts with one."""
    eol = _line_end(body, m.end())
    if _JUST_INLINE.search(body, m.end(), eol):
        return True
    start = _next_line(body, eol)
    return start is not None and _JUST_LINE.match(body, start) is not None


def _line_justification(body: str, m: re.Match[str]) -> str | None:
    eol = _line_end(body, m.end())
    inline = _JUST_INLINE.search(body, m.end(), eol)
    after = inline or _JUST_LINE.search(body, eol)
    if after:
        return _clean(body[after.end() :])
    line_start = body.rfind("\n", 0, m.start("label")) + 1
    before = list(_JUST_LINE.finditer(body, 0, line_start))
    if before:  # "justification: ...\nscore: 4"
        return _clean(body[before[-1].end() : line_start])
    # No label: the judge's words around the score, e.g. its reasoning before a final score.
    return _clean(body[:line_start] + "\n" + body[m.end() :].lstrip(" \t.,;:)-–—*_"))


def _clean(text: str) -> str | None:
    return text.strip().strip("*_").strip() or None


def _line_end(body: str, pos: int) -> int:
    end = body.find("\n", pos)
    return len(body) if end == -1 else end


def _next_line(body: str, eol: int) -> int | None:
    """Start of the first non-blank line after the line ending at `eol`."""
    while eol < len(body):
        start = eol + 1
        eol = _line_end(body, start)
        if body[start:eol].strip():
            return start
    return None


def _quoted_mask(body: str) -> list[bool]:
    """Per character: inside a code fence, a `>` blockquote line, or double quotes."""
    mask = [False] * len(body)
    for m in (*_FENCE.finditer(body), *_BLOCKQUOTE.finditer(body)):
        mask[m.start() : m.end()] = [True] * (m.end() - m.start())
    # Straight quotes toggle, curly and Japanese brackets open and close. An unbalanced quote hides
    # what follows: a verdict lost that way is an explicit parse_failure, never a quoted grade.
    inside = False
    for i, ch in enumerate(body):
        if mask[i] and not inside:
            continue
        if ch == '"':
            inside = not inside
        elif ch in "“「":
            inside = True
        elif ch in "”」":
            inside = False
        mask[i] = mask[i] or inside
    return mask


# ---- answers that try to grade themselves -----------------------------------------------------

# A line of the answer that reads like a verdict: a score or justification label and separator.
_VERDICT_LINE = re.compile(
    rf"^[ \t*_#>+-]*(?:{_SCORE_LABEL}|{_JUST_LABEL})[ \t*_]*(?:\([^)\n]*\))?[ \t*_]*[:=：]",
    re.IGNORECASE,
)
_SPACE = re.compile(r"\s+")


def quote_answer(answer: str) -> str:
    """The candidate's answer as quoted data for the judge: in a code fence longer than any in
    it, and every line that reads like a verdict ("score: 5") prefixed with "| ", so that what
    the answer says about its own grade is not where a judge or this parser looks for one."""
    lines = ["| " + line if _VERDICT_LINE.match(line) else line for line in answer.splitlines()]
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", answer)), default=0))
    return f"{fence}\n" + "\n".join(lines) + f"\n{fence}"


def strip_echo(reply: str, answer: str) -> str | None:
    """The judge's reply without what it copied from the answer under test: verdict-like lines
    and JSON objects found verbatim in the answer. None when it copied nothing of the kind."""
    answer_lines = {line.strip() for line in answer.splitlines() if line.strip()}
    compact_answer = _SPACE.sub("", answer)
    kept, echoed = [], False
    for line in reply.splitlines():
        if line.strip() in answer_lines and _VERDICT_LINE.match(line):
            echoed = True
        else:
            kept.append(line)
    text = "\n".join(kept)
    pos = text.find("{")
    while pos != -1:  # JSON verdicts copied from the answer, whitespace aside
        try:
            _, end = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError):
            pos = text.find("{", pos + 1)
            continue
        if _SPACE.sub("", text[pos:end]) in compact_answer:
            text, echoed = text[:pos] + text[end:], True
            pos = text.find("{", pos)
        else:
            pos = text.find("{", end)
    return text if echoed else None
