"""Defaults in one place: every value a flag, the config file or the environment can override."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Candidate: the article's LM Studio setup.
BASE_URL = "http://localhost:1234/v1"
MODEL = "google/gemma-3-12b"
SYSTEM_PROMPT = "Answer the following question in two sentences"
TEMPERATURE = 0.7
MAX_TOKENS = 256
# Local servers accept any key; the OpenAI client refuses to start without one.
PLACEHOLDER_API_KEY = "local-no-key"
API_KEY_ENV = "OPENAI_API_KEY"

# Judge: the article's self-hosted gateway and its `chat` endpoint.
GATEWAY_URL = "http://localhost:5002"
GATEWAY_CONFIG = REPO_ROOT / "gateway_config.yaml"
JUDGES = ("answer_similarity",)
JUDGE_ENDPOINT = "chat"
JUDGE_TEMPERATURE = 0.0
# A verdict is a score line and a short justification; a cap keeps a rambling local judge fast.
JUDGE_MAX_TOKENS = 200

# Data and tracking.
DATA = REPO_ROOT / "data" / "article_qa.csv"
EXPERIMENT = "local-llm-judge"
TRACKING_DB = "mlflow.db"  # a SQLite file in the working folder

# Runtime.
STACK = "auto"
STACK_CHOICES = ("auto", "external", "embedded")
CONCURRENCY = 4
TIMEOUT_S = 120.0
MAX_RETRIES = 3
CACHE_DIR = ".mlflow_eval_cache"

# Embedded stack: llama-cpp-python's server with the Gemma 3 270M GGUF from PyPI.
EMBEDDED_MODEL_ID = "gemma-3-270m"
EMBEDDED_CHAT_FORMAT = "gemma"  # the GGUF is a base model without a usable chat template
EMBEDDED_N_CTX = 4096
READY_TIMEOUT_S = 60.0

# Judging.
JUDGE_FORMATS = ("auto", "text", "json")
# auto: json when the judge is the embedded Gemma 3 270M (text verdicts: 10 of 10 unscored on
# data/sample_qa.csv; json: 0 of 10), MLflow's text format for any other judge.
JUDGE_FORMAT = "auto"
JUDGE_REPEATS = 1
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95

# Prompts, versioned: change one by adding a _V2 beside it, never by editing a _V1 in place.
# Appended to MLflow's judge prompt in --judge-format json; with response_format json_object the
# server constrains the reply to JSON, and this tells the judge which JSON.
JSON_VERDICT_V1 = (
    "\n\nRespond with only a JSON object, no other text, in exactly this form:\n"
    '{{"score": <integer from {low} to {high}>, "justification": "<one or two sentences>"}}'
)
# V1 measured on the embedded Gemma 3 270M: 10/10 verdicts parsed, but every justification was
# the placeholder copied verbatim. V2 names the keys without a placeholder to copy.
JSON_VERDICT_V2 = (
    '\n\nRespond with only a JSON object with exactly two keys: "score", an integer from {low} '
    'to {high} chosen by the rubric above, and "justification", your reason for that score '
    "in your own words."
)
JSON_VERDICT = JSON_VERDICT_V2
