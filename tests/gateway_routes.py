"""A gateway config with a traffic-split judge route over two servers (a test's and a bench's)."""

from __future__ import annotations

from pathlib import Path


def endpoint(name: str, model: str, url: str) -> str:
    """One `llm/v1/chat` endpoint of an OpenAI-compatible server, as YAML under `endpoints:`."""
    return (
        f"  - name: {name}\n    endpoint_type: llm/v1/chat\n    model:\n      provider: openai\n"
        f"      name: {model}\n      config:\n        openai_api_key: $OPENAI_API_KEY\n"
        f"        openai_api_base: {url}\n"
    )


def two_server_routes(path: Path, a_url: str, b_url: str) -> Path:
    """Endpoints judge-a (model-a at `a_url`) and judge-b (model-b at `b_url`); the route `chat`
    splits 50/50 over them, the route `solo` sends everything to judge-a."""
    path.write_text(
        "endpoints:\n"
        + endpoint("judge-a", "model-a", a_url)
        + endpoint("judge-b", "model-b", b_url)
        + "routes:\n"
        "  - name: chat\n    task_type: llm/v1/chat\n    destinations:\n"
        "      - name: judge-a\n        traffic_percentage: 50\n"
        "      - name: judge-b\n        traffic_percentage: 50\n"
        "  - name: solo\n    task_type: llm/v1/chat\n    destinations:\n"
        "      - name: judge-a\n        traffic_percentage: 100\n",
        encoding="utf-8",
    )
    return path
