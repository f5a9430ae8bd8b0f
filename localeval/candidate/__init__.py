"""The local LLM under test: its settings and its answers, one call per row (`settings`), a
conversation's turns one after the other, each with the dialogue so far (`conversation`), and
the same model wrapped as an MLflow pyfunc model, as the article logs it (`model`, which imports
MLflow and so is not imported here). Imports `calls`, `config` and the shared ground."""

from .settings import CandidateSettings, answer_all, candidate_settings

__all__ = ["CandidateSettings", "answer_all", "candidate_settings"]
