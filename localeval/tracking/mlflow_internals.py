"""The MLflow names we use that MLflow does not document as public API, all here, read from
MLflow 3.17.2 and checked again on 3.18.0 (the pinned version); tests/test_mlflow_internals.py
fails loudly when one of them changes on an upgrade.

Why each is needed: MLflow's public tracing API (`mlflow.start_span_no_context`, `span.end`,
`mlflow.log_feedback`) writes a trace as it happens, one store call per span and per assessment,
with the clock of the moment. Our rows' calls are over when a trace is written (answers and
verdicts come from a thread pool, some from the cache), so each trace is built whole, with the
calls' own times, and written with the tracing client that MLflow's exporter itself uses:
`start_trace` (the trace, its tags, metadata and assessments) and one `log_spans` per batch.
The span attribute keys and the token-usage sum are how MLflow's UI reads a trace's calls.
Nothing here writes a table of MLflow's store: its own store code does.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlflow.entities import Span, TraceInfo
from mlflow.tracing.client import TracingClient  # mlflow/tracing/client.py
from mlflow.tracing.constant import (
    SpanAttributeKey,
    TraceMetadataKey,
    TraceTagKey,
)
from mlflow.tracing.utils import aggregate_usage_from_spans

__all__ = [
    "SpanAttributeKey",
    "TraceMetadataKey",
    "TraceStore",
    "TraceTagKey",
    "aggregate_usage_from_spans",
]


class TraceStore:
    """Writes whole traces (info with assessments, and spans) into a tracking store."""

    def __init__(self, tracking_uri: str) -> None:
        self._client = TracingClient(tracking_uri)

    def write(self, experiment_id: str, traces: Sequence[tuple[TraceInfo, list[Span]]]) -> None:
        """The traces' infos one by one (MLflow has no batch call for them), their spans in one
        call."""
        for info, _ in traces:
            self._client.start_trace(info)
        # Its first argument is a trace location: an experiment id for a tracking store.
        self._client.log_spans(experiment_id, [span for _, spans in traces for span in spans])
