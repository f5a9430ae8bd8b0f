"""Which servers run: processes we start and probes that tell whether a server answers
(`servers`), the embedded llama.cpp server and MLflow AI Gateway (`stack`, started before the
heavy imports by `localeval.launch`), what a gateway serves (`gateway`), the checks before any row
(`preflight`) and what to tell the user to start (`hints`). Imports `calls`, `config` and the
shared ground."""

from .servers import Service
from .stack import Resolved, plan

__all__ = ["Resolved", "Service", "plan"]
