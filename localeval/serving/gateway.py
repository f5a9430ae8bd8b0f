"""What an MLflow AI Gateway serves: its endpoints, its traffic-split routes (`routes:` in its
config: each call to a route goes to one of its destination endpoints, picked by weight) and the
model behind each.

Learnt from the gateway itself (`query`) or from its config file (`from_config`, which alone
says where each model is served: the gateway's API gives provider and model name, not the URL).
MLflow 3.17 answers a route's calls at /v1/chat/completions but does not list it among the
endpoints: a name it does not list is looked up in its route API.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ..config.settings import SERVER_GATEWAY_PATH
from ..errors import ConfigError
from .servers import get_json

OPENAI_BASE = "https://api.openai.com/v1"  # the gateway's default for provider openai
ENDPOINTS_API = "/api/2.0/endpoints/"
ROUTE_API = "/api/3.0/gateway/route/"  # MLflow 3: GET <name> -> the route's destinations
# The AI Gateway inside `mlflow server`: its endpoints (each with its model definitions) and the
# secrets they use (whose `auth_config.api_base` is the upstream's URL; keys are never returned).
SERVER_ENDPOINTS_API = "/api/3.0/mlflow/gateway/endpoints/list"
SERVER_SECRETS_API = "/api/3.0/mlflow/gateway/secrets/list"
CHAT_KIND = "llm/v1/chat"  # every endpoint of the server's gateway answers chat completions


def is_server_gateway(url: str) -> bool:
    """Whether `url` is the OpenAI-compatible base of an `mlflow server`'s AI Gateway."""
    return url.rstrip("/").endswith(SERVER_GATEWAY_PATH)


@dataclass(frozen=True)
class Upstream:
    """The model behind a gateway endpoint."""

    provider: str
    model: str
    base_url: str | None = None  # known from a config file only

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.model}"


@dataclass(frozen=True)
class Served:
    """A gateway's endpoints and routes by name."""

    kinds: dict[str, str] = field(default_factory=dict)  # endpoint or route -> its chat type
    upstreams: dict[str, Upstream] = field(default_factory=dict)  # endpoint -> its model
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # route -> destinations

    def destinations(self, name: str) -> tuple[str, ...]:
        """The endpoints that answer for `name`: a route's destinations, an endpoint itself."""
        if name in self.routes:
            return self.routes[name]
        return (name,) if name in self.kinds else ()

    def identity(self, name: str) -> str:
        """What answers at `name`, for cache keys and the run's params: an endpoint's
        `provider:model`; a route's destinations' models, sorted (`route[openai:a, openai:b]`),
        so that changing a destination's model changes it; '?' when unknown."""
        if name in self.routes:
            return f"route[{', '.join(sorted(map(self._label, self.routes[name])))}]"
        return self._label(name)

    def _label(self, endpoint: str) -> str:
        upstream = self.upstreams.get(endpoint)
        return "?" if upstream is None else upstream.label

    def servers(self, names: Iterable[str]) -> int:
        """How many servers answer for these names: their destinations' distinct URLs (a
        destination whose URL is unknown counts as a server of its own)."""
        found = set()
        for name in names:
            for endpoint in self.destinations(name) or (name,):
                upstream = self.upstreams.get(endpoint)
                found.add(upstream.base_url if upstream and upstream.base_url else endpoint)
        return len(found)

    def with_urls_from(self, config: Served) -> Served:
        """These endpoints with the URLs a config file gives the same endpoint (same name and
        model): a gateway started from that file."""
        upstreams = dict(self.upstreams)
        for name, upstream in self.upstreams.items():
            known = config.upstreams.get(name)
            if known is not None and known.label == upstream.label:
                upstreams[name] = replace(upstream, base_url=known.base_url)
        return replace(self, upstreams=upstreams)


def read_gateway_config(source: Path) -> dict:
    """The gateway config file as a mapping with an `endpoints:` list, or a ConfigError."""
    try:
        config = yaml.safe_load(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"Gateway config {source} does not exist. Check --gateway-config."
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"Gateway config {source} is not valid YAML: {exc}.") from None
    if not isinstance(config, dict) or not isinstance(config.get("endpoints"), list):
        raise ConfigError(f"Gateway config {source} has no 'endpoints:' list.")
    return config


def from_config(config: dict) -> Served:
    """What a gateway started from this config (`read_gateway_config`) serves."""
    served = Served()
    for endpoint in config["endpoints"]:
        if not isinstance(endpoint, dict) or not isinstance(endpoint.get("name"), str):
            continue
        name, model = endpoint["name"], endpoint.get("model")
        served.kinds[name] = str(endpoint.get("endpoint_type", ""))
        if isinstance(model, dict):
            provider = str(model.get("provider", "?"))
            base = None
            if provider == "openai":
                base = str((model.get("config") or {}).get("openai_api_base") or OPENAI_BASE)
            served.upstreams[name] = Upstream(provider, str(model.get("name", "?")), base)
    for route in config.get("routes") or []:
        if isinstance(route, dict) and isinstance(route.get("name"), str):
            _add_route(served, route)
    return served


def _add_route(served: Served, route: dict[str, Any]) -> None:
    destinations = route.get("destinations") or []
    served.routes[route["name"]] = tuple(
        str(d["name"]) for d in destinations if isinstance(d, dict) and "name" in d
    )
    served.kinds[route["name"]] = str(route.get("task_type", ""))


def _get_object(url: str, timeout: float) -> dict[str, Any] | None:
    """The JSON object at `url`; None when nothing answers there or the reply is not one."""
    try:
        data = get_json(url, timeout)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def query(gateway_url: str, names: Iterable[str] = (), timeout: float = 2.0) -> Served | None:
    """What the gateway at `gateway_url` serves, or None if no gateway answers there. Of the
    routes, only those among `names` are looked up (the gateway does not list them)."""
    base = gateway_url.rstrip("/")
    if is_server_gateway(base):
        return _query_server(base.removesuffix(SERVER_GATEWAY_PATH), timeout)
    data = _get_object(base + ENDPOINTS_API, timeout)
    if data is None:
        return None
    served = Served()
    for e in data.get("endpoints") or []:
        if not isinstance(e, dict) or "name" not in e:
            continue
        served.kinds[e["name"]] = str(e.get("endpoint_type", ""))
        model = e.get("model")
        if isinstance(model, dict):
            upstream = Upstream(str(model.get("provider", "?")), str(model.get("name", "?")))
            served.upstreams[e["name"]] = upstream
    for name in sorted(set(names) - set(served.kinds)):
        # None on a 404: no such route (or a gateway older than MLflow 3's routes)
        route = _get_object(base + ROUTE_API + urllib.parse.quote(name, safe=""), timeout)
        if route is not None and route.get("name") == name:
            _add_route(served, route)
    return served


def _query_server(server: str, timeout: float) -> Served | None:
    """What an `mlflow server`'s AI Gateway serves: its endpoints, each with its primary model
    and that model's URL (from the secret it uses); None if the server has no gateway API."""
    data = _get_object(server + SERVER_ENDPOINTS_API, timeout)
    if data is None:
        return None
    secrets = _get_object(server + SERVER_SECRETS_API, timeout) or {}
    bases = {
        s.get("secret_id"): (s.get("auth_config") or {}).get("api_base")
        for s in secrets.get("secrets") or []
        if isinstance(s, dict)
    }
    served = Served()
    for e in data.get("endpoints") or []:
        if not isinstance(e, dict) or not e.get("name"):
            continue
        served.kinds[e["name"]] = CHAT_KIND
        models = [m.get("model_definition") or {} for m in e.get("model_mappings") or []]
        if models and isinstance(models[0], dict):
            model = models[0]
            base = bases.get(model.get("secret_id"))
            if base is None and model.get("provider") == "openai":
                base = OPENAI_BASE
            served.upstreams[e["name"]] = Upstream(
                str(model.get("provider", "?")), str(model.get("model_name", "?")), base
            )
    return served


def users_gateway(url: str, endpoints: Iterable[str], gateway_config: Path) -> Served | None:
    """What the gateway we did not start serves; the URLs behind its endpoints from the gateway
    config (--gateway-config, or ours by default) where its endpoints and models match (a YAML
    gateway's API does not say them; a server's gateway does)."""
    served = query(url, endpoints)
    if served is None or is_server_gateway(url):
        return served
    try:
        in_file = from_config(read_gateway_config(gateway_config))
    except ConfigError:
        return served
    return served.with_urls_from(in_file)


def judge_concurrency(
    asks: Mapping[str, Iterable[str]], default: int, given: bool, served: Served
) -> dict[str, int]:
    """Each judge's calls in flight (`asks`: judge key -> its endpoints): `default` when it was
    given (--concurrency); else `default` for each server behind the judge's endpoints (each
    destination of a route counts)."""
    # The default (4) is sized for one local server: its slots never wait for the next prompt,
    # and a queued call does not wait out --timeout behind many others. Several servers behind
    # a judge get it each: a route sends each call to a destination picked at random, so a
    # server often sits idle with few calls in flight (128 verdicts of 0.05 s, two single-slot
    # servers behind a route: 4.7 s with 2 in flight, 3.7 s with 4, 3.4 s with 8; one: 6.5 s).
    # The candidate's answers come from one server per model (models run one after the other):
    # --concurrency as given or its default.
    if given:
        return {key: default for key in asks}
    return {key: default * max(1, served.servers(names)) for key, names in asks.items()}
