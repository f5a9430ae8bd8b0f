"""Every evaluated row as an MLflow trace linked to its run, as `mlflow.genai.evaluate` leaves
them: the row's request and the answer, a span for the candidate call and one per judge call,
each verdict as feedback on the trace and the ground truth as an expectation.

Traces are built from the typed rows after their calls and written in batches, in the
background (`trace_writer`), with the tracing client MLflow's exporter uses (`mlflow_internals`):
a `start_trace` per trace (its assessments with it), one `log_spans` per batch, then one public
`link_traces_to_run`.
MLflow's public span API writes each span, trace and assessment in a call of its own, with the
clock of the moment: 200 rows took 6.6 s that way.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import (
    AssessmentError,
    AssessmentSource,
    AssessmentSourceType,
    Expectation,
    Feedback,
    Span,
    TraceInfo,
    TraceLocation,
    TraceState,
)

from ..candidate.conversation import turn_messages
from ..types import Call, RowResult, Score, Verdict
from .mlflow_internals import (
    SpanAttributeKey,
    TraceMetadataKey,
    TraceTagKey,
    aggregate_usage_from_spans,
)

# MLflow 3's trace metadata that groups traces into a session (its UI's Sessions view).
SESSION = "mlflow.trace.session"
EXPECTATION = "expected_response"  # the name mlflow.genai.evaluate gives a row's ground truth
_SOURCE_RUN_ID = "mlflow.assessment.sourceRunId"  # AssessmentMetadataKey.SOURCE_RUN_ID
_PREVIEW = 1000  # characters of request/response kept in the trace list's preview columns


@dataclass(frozen=True)
class TraceSettings:
    """What every trace of one model's run says about where its calls went."""

    run_id: str
    experiment_id: str
    model: str
    base_url: str
    system_prompt: str
    candidate_params: dict[str, Any]
    upstreams: dict[str, str]  # judge endpoint -> the model the gateway reports behind it
    prompt_layout: str
    dataset_digest: str
    judge_versions: dict[str, str] = field(default_factory=dict)  # judge key -> prompt version


# (row, judge key, verdict) -> the prompt the judge was sent; rendered where the row is handed
# in (the graders that render it stay in the run's process).
JudgePrompt = Callable[[RowResult, str, Verdict], str]
Prompts = dict[tuple[str, int], str]  # (judge key, verdict's place in its judgement) -> prompt


def prompts_of(row: RowResult, judge_prompt: JudgePrompt) -> Prompts:
    """The prompts of a row's verdicts that made a call (what `build` puts in their spans)."""
    return {
        (key, i): judge_prompt(row, key, verdict)
        for key, judgement in row.judgements.items()
        for i, verdict in enumerate(judgement.verdicts)
        if verdict.call is not None
    }


def _id(n: int) -> str:
    """A random span or trace id, base64 as a span's dict holds it."""
    return base64.b64encode(os.urandom(n)).decode()


def _hex(span_id: str) -> str:
    """The same id as MLflow's entities show it (hex): what an assessment's `span_id` names."""
    return base64.b64decode(span_id).hex()


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _span(
    trace: tuple[str, str],
    span_id: str,
    parent: str | None,
    name: str,
    kind: str,
    call: Call | None,
    inputs: Any,
    outputs: Any,
    attributes: dict[str, Any],
    error: str | None = None,
    at: float = 0.0,
) -> dict[str, Any]:
    start = call.started if call is not None else at
    end = start + (call.latency_s if call is not None else 0.0)
    attrs = {
        SpanAttributeKey.REQUEST_ID: trace[1],
        "mlflow.spanType": kind,
        "mlflow.spanInputs": inputs,
        "mlflow.spanOutputs": outputs,
        **{k: v for k, v in attributes.items() if v is not None},
    }
    if call is not None and (call.prompt_tokens or call.completion_tokens):
        attrs[SpanAttributeKey.CHAT_USAGE] = {
            "input_tokens": call.prompt_tokens or 0,
            "output_tokens": call.completion_tokens or 0,
            "total_tokens": (call.prompt_tokens or 0) + (call.completion_tokens or 0),
        }
    return {
        "trace_id": trace[0],
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "start_time_unix_nano": _ns(start),
        "end_time_unix_nano": _ns(end),
        "events": [],
        "status": {
            "code": "STATUS_CODE_ERROR" if error else "STATUS_CODE_OK",
            "message": error or "",
        },
        # Attribute values are stored JSON-encoded, as MLflow's own spans store them.
        "attributes": {k: json.dumps(v, default=str, ensure_ascii=False) for k, v in attrs.items()},
        "links": [],
    }


def _feedback(
    name: str, score: Score, source: str, trace_id: str, span_id: str, settings: TraceSettings,
    extra: dict[str, str] | None = None,
) -> Feedback:  # fmt: skip
    """A verdict as feedback: the score and rationale, or the reason it has none as the error."""
    error = None
    if score.value is None:
        error = AssessmentError(
            error_code=score.reason or "unscored", error_message=score.justification or score.raw
        )
    return Feedback(
        name=name,
        value=score.value,
        rationale=score.justification,
        error=error,
        source=AssessmentSource(source_type=AssessmentSourceType.LLM_JUDGE, source_id=source),
        trace_id=trace_id,
        span_id=span_id,
        metadata={_SOURCE_RUN_ID: settings.run_id, **(extra or {})},
    )


def build(
    row: RowResult, settings: TraceSettings, prompts: Prompts
) -> tuple[TraceInfo, list[Span]]:
    """One row's trace: its info (with the assessments) and its spans (`prompts`: the judge
    prompts of its verdicts, from `prompts_of`)."""
    # MLflow's trace id is "tr-" + the spans' OpenTelemetry trace id in hex: a tracking server
    # rebuilds it from the spans and ignores the one sent (other ids: spans in orphan traces).
    otel_id, root = os.urandom(16), _id(8)
    trace_id = "tr-" + otel_id.hex()
    otel_trace = (base64.b64encode(otel_id).decode(), trace_id)  # the spans' id, MLflow's id
    sample, answer = row.sample, row.answer
    request: dict[str, Any] = {"inputs": sample.input}
    if sample.context:
        request["context"] = sample.context
    request.update({k: v for k, v in sample.metadata.items() if isinstance(v, str | int | float)})
    calls = [answer.call] + [v.call for j in row.judgements.values() for v in j.verdicts]
    timed = [c for c in calls if c is not None]
    started = min((c.started for c in timed), default=0.0)
    ended = max((c.started + c.latency_s for c in timed), default=started)
    # Answers from the data (--answer-col) were not asked of any model: their span says so.
    asked = answer.call is not None or answer.failed
    candidate = _span(
        otel_trace, _id(8), root, "candidate" if asked else "answer from the data",
        "CHAT_MODEL" if asked else "UNKNOWN", answer.call,
        {"messages": turn_messages(settings.system_prompt, sample)}, answer.text,
        {"model": settings.model, "base_url": settings.base_url, **settings.candidate_params,
         "latency_s": answer.call.latency_s if answer.call else None,
         "cached": answer.call.cached if answer.call else None},
        error=answer.error, at=started,
    )  # fmt: skip
    spans = [candidate]
    assessments: list[Any] = []
    for key, judgement in row.judgements.items():
        # Named after the judge, without "/<version>": MLflow's UI shows only the part after a
        # slash. The metric's full name is in the feedback's metadata.
        judge_name = key.partition("/")[0]
        several = len(judgement.verdicts) > 1
        for i, verdict in enumerate(judgement.verdicts):
            if verdict.call is None:  # no call was made (the candidate produced no answer)
                continue
            span_id = _id(8)
            upstream = settings.upstreams.get(verdict.endpoint, "?")
            prompt = prompts.get((key, i))
            spans.append(
                _span(
                    otel_trace, span_id, root, f"judge {key} @{verdict.endpoint}"
                    + (f" #{verdict.repeat + 1}" if several else ""), "LLM", verdict.call,
                    {"messages": [{"role": "user", "content": prompt}]} if prompt else None,
                    verdict.score.raw,
                    {"endpoint": verdict.endpoint, "upstream_model": upstream,
                     "prompt_layout": settings.prompt_layout,
                     "prompt_version": settings.judge_versions.get(key, key),
                     "score": verdict.score.value, "unscored_reason": verdict.score.reason,
                     "cached": verdict.call.cached if verdict.call else None},
                    error=verdict.score.raw if verdict.score.reason == "judge_error" else None,
                    at=ended,
                )
            )  # fmt: skip
            if several:
                name = f"{judge_name} [{verdict.endpoint} {verdict.repeat + 1}]"
                source = f"{verdict.endpoint} ({upstream})"
                assessments.append(
                    _feedback(name, verdict.score, source, trace_id, _hex(span_id), settings)
                )
        endpoints = dict.fromkeys(v.endpoint for v in judgement.verdicts)
        source = "+".join(f"{e} ({settings.upstreams.get(e, '?')})" for e in endpoints)
        assessments.append(
            _feedback(judge_name, judgement.combined, source, trace_id, _hex(root), settings,
                      {"metric": key, "verdicts": str(len(judgement.verdicts))})
        )  # fmt: skip
    if sample.target:
        assessments.append(
            Expectation(
                name=EXPECTATION,
                value=sample.target,
                source=AssessmentSource(source_type=AssessmentSourceType.HUMAN, source_id="data"),
                trace_id=trace_id,
                span_id=_hex(root),
                metadata={_SOURCE_RUN_ID: settings.run_id},
            )
        )
    root_span = _span(
        otel_trace, root, None, f"row {row.index + 1}", "CHAIN",
        Call(started, max(ended - started, 0.0)), request, answer.text,
        {"row": row.index + 1, "sample_id": sample.id}, error=answer.error,
    )  # fmt: skip
    response = answer.text if answer.text is not None else f"FAILED: {answer.error}"
    entities = [Span.from_dict(s) for s in [root_span, *spans]]
    metadata = {
        TraceMetadataKey.SOURCE_RUN: settings.run_id,
        "mlflow.trace_schema.version": "3",
        "localeval.row": str(row.index + 1),
        "localeval.dataset_digest": settings.dataset_digest,
    }
    name = f"row {row.index + 1}"
    if sample.turn is not None:  # one session per conversation of this run (MLflow's Sessions)
        metadata[SESSION] = f"{sample.turn.conversation} ({settings.run_id[:8]})"
        metadata["localeval.conversation"] = sample.turn.conversation
        metadata["localeval.turn"] = str(sample.turn.number)
        name = f"{sample.turn.conversation} turn {sample.turn.number}/{sample.turn.count}"
    if usage := aggregate_usage_from_spans(entities):  # as MLflow's tracer sums a trace's calls
        metadata[TraceMetadataKey.TOKEN_USAGE] = json.dumps(usage)
    info = TraceInfo(
        trace_id=trace_id,
        trace_location=TraceLocation.from_experiment_id(settings.experiment_id),
        request_time=int(started * 1000),
        execution_duration=int(max(ended - started, 0.0) * 1000),
        state=TraceState.ERROR if answer.failed else TraceState.OK,
        request_preview=json.dumps(request, ensure_ascii=False)[:_PREVIEW],
        response_preview=response[:_PREVIEW],
        trace_metadata=metadata,
        tags={TraceTagKey.TRACE_NAME: name},
        assessments=assessments,
    )
    return info, entities
