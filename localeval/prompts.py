"""Prompts, versioned: change one by adding a _V2 beside it, never by editing a _V1 in place.

The judges' own prompts are MLflow's (`mlflow.metrics.genai`, v1); what is ours is appended.
"""

from __future__ import annotations

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
JSON_VERDICT_VERSION = "json-v2"
