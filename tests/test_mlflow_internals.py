"""MLflow names outside its documented API are used in one module only, and fail loudly here
when an MLflow upgrade changes them (read from MLflow 3.17.2, unchanged in 3.18.0)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "localeval"
INTERNALS = PACKAGE / "tracking" / "mlflow_internals.py"
# Undocumented MLflow modules: allowed in mlflow_internals.py only.
UNDOCUMENTED = ("mlflow.store", "mlflow.tracing.client", "mlflow.tracing.constant",
                "mlflow.tracing.utils", "mlflow.tracing.otel")  # fmt: skip


def _private_uses(path: Path) -> list[str]:
    """`from mlflow... import _x`, `mlflow._x`, a `_`-prefixed part of an mlflow module path,
    an undocumented MLflow module, and a client's `.store` (MLflow's store object)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlflow"):
            module = node.module or ""
            if any(part.startswith("_") for part in module.split(".")):
                found.append(f"{path.name}:{node.lineno} from {module}")
            if module.startswith(UNDOCUMENTED):
                found.append(f"{path.name}:{node.lineno} from {module}")
            found += [f"{path.name}:{node.lineno} {a.name}" for a in node.names if a.name[0] == "_"]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(UNDOCUMENTED):
                    found.append(f"{path.name}:{node.lineno} import {alias.name}")
        elif isinstance(node, ast.Attribute):
            chain, value = [node.attr], node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            named = isinstance(value, ast.Name) and value.id == "mlflow"
            if named and any(part.startswith("_") for part in chain):
                found.append(f"{path.name}:{node.lineno} mlflow.{'.'.join(reversed(chain))}")
            if node.attr == "store" and isinstance(node.value, ast.Attribute | ast.Name):
                found.append(f"{path.name}:{node.lineno} .store")
    return found


def test_no_private_or_undocumented_mlflow_name_outside_the_one_module():
    found = [u for p in sorted(PACKAGE.rglob("*.py")) if p != INTERNALS for u in _private_uses(p)]
    assert found == []


def test_the_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import mlflow\nfrom mlflow.store.tracking.dbmodels.models import SqlSpan\n"
        "from mlflow.tracing.client import TracingClient\nmlflow.tracking._get_store()\n"
        "client.store.log_spans()\n"
    )
    assert len(_private_uses(bad)) == 4


def test_the_internals_mlflow_3_17_shapes():
    """What mlflow_internals relies on, as read from MLflow 3.17.2 (unchanged in 3.18.0): if this
    fails after an MLflow upgrade, re-read mlflow/tracing/client.py and mlflow/tracing/constant.py
    and update the module (or move to a public API that now covers writing a finished trace)."""
    from mlflow.tracing.client import TracingClient
    from mlflow.tracing.constant import SpanAttributeKey, TraceMetadataKey, TraceTagKey
    from mlflow.tracing.utils import aggregate_usage_from_spans

    start = inspect.signature(TracingClient.start_trace)
    assert list(start.parameters)[:2] == ["self", "trace_info"], start
    spans = inspect.signature(TracingClient.log_spans)
    assert list(spans.parameters)[:3] == ["self", "location", "spans"], spans
    assert (SpanAttributeKey.REQUEST_ID, SpanAttributeKey.CHAT_USAGE) == (
        "mlflow.traceRequestId", "mlflow.chat.tokenUsage")  # fmt: skip
    assert (TraceMetadataKey.SOURCE_RUN, TraceMetadataKey.TOKEN_USAGE) == (
        "mlflow.sourceRun", "mlflow.trace.tokenUsage")  # fmt: skip
    assert TraceTagKey.TRACE_NAME == "mlflow.traceName"
    assert list(inspect.signature(aggregate_usage_from_spans).parameters) == ["spans"]
