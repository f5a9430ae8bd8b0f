"""The MLflow side: the tracking store checked before MLflow touches it (`store`), each model's
run with its params, metrics and logged model (`mlflow_run`), what `mlflow.evaluate` gets
(`metrics`), a trace per row (`traces`; the MLflow names outside its public API that they need, in
`mlflow_internals`), `--baseline` (`baseline`) and
`--agreement` (`feedback`). Imports every stage below it, never the output. Only `store` is
imported here: the others import MLflow (seconds), which `--help` must not pay for."""

from .store import default_tracking_uri

__all__ = ["default_tracking_uri"]
