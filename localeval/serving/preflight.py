"""Before any row: each candidate server serves its model, the gateway has each judge endpoint,
and the model behind each judge endpoint answers a one-token call through the gateway.

A failure is exit 2 with one paragraph that names the real fault where it is (which endpoint,
which model at which URL) and what to start, instead of every row ending unscored.
"""

from __future__ import annotations

import json
import re

from .. import workspace
from ..config.settings import SERVER_GATEWAY_PATH
from ..config.slices import ServingOptions
from ..errors import PreflightError
from ..redact import mask
from ..types import ModelSpec
from . import hints, servers
from .gateway import Served, is_server_gateway
from .servers import http_status, list_models, post_json
from .stack import EMBEDDED_MODEL_ID, Resolved

CHAT = "llm/v1/chat"
# The test call: one word in, one token out (temperature 0: a sampling server does no more).
PROBE = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0}
# The words aiohttp (the gateway's client) uses for an upstream that does not listen.
_CANNOT_CONNECT = re.compile(r"Cannot connect to host ([\w.\-\[\]:]+?:\d+)")


def check(
    serving: ServingOptions,
    resolved: Resolved,
    judge_endpoints: dict[str, str],
    served: Served | None,
    call_judges: bool = True,
) -> None:
    """Every check, in the order a user fixes them.

    Args:
        judge_endpoints: gateway endpoint (or route) name -> the judge that asks it.
        served: what the gateway serves (None: no gateway answers).
        call_judges: False when every verdict the run needs is cached (no judge is called).
    """
    try:
        check_candidates(serving, resolved.models)
        check_gateway(serving, resolved, judge_endpoints, served)
        if call_judges and served is not None:
            check_judges_answer(serving, resolved, judge_endpoints, served)
    except PreflightError:
        # A server this run started that died is ours to name, not one for the user to start
        # (a crash at the first completion gives the gateway's 500 a moment before it is gone).
        if found := workspace.wait_dead(2.0):
            raise servers.died_error(found, "before the first row") from None
        raise


def check_candidates(serving: ServingOptions, models: tuple[ModelSpec, ...]) -> None:
    """Each candidate's server answers and lists its model."""
    listed = {spec.base_url: list_models(spec.base_url) for spec in models}
    down = [spec for spec in models if listed[spec.base_url] is None]
    if down:
        options = [serving.url_given(s.id) or "--base-url" for s in down]
        raise PreflightError(
            hints.down_message(
                down, options, "run with --stack auto or --stack embedded to use the embedded "
                "llama.cpp server"
            )
        )  # fmt: skip
    for spec in models:
        ids = listed[spec.base_url] or []
        if spec.served_id not in ids:
            how = serving.model_option or "--model"
            todo = hints.load_hint(spec.base_url, spec.id)
            raise PreflightError(
                f"The server at {mask(spec.base_url)} does not serve model {spec.id!r}; it lists "
                f"{ids}. {todo[0].upper()}{todo[1:]}, or name one of the listed ids in {how}."
            )


def check_gateway(
    serving: ServingOptions,
    resolved: Resolved,
    judge_endpoints: dict[str, str],
    served: Served | None,
) -> None:
    """The gateway answers and has each judge endpoint (or route), of the chat type."""
    gateway = mask(resolved.gateway_url)
    if is_server_gateway(resolved.gateway_url):
        _check_server_gateway(resolved, judge_endpoints, served)
        return
    if served is None:
        raise PreflightError(
            f"No MLflow AI Gateway answers at {gateway}. Start it with 'mlflow gateway start "
            f"--config-path {serving.gateway_config} --port 5002', pass --gateway-url, or run "
            "with --stack auto to start it for you."
        )
    for endpoint, judge in judge_endpoints.items():
        kind = served.kinds.get(endpoint)
        if kind is None:
            raise PreflightError(
                f"The gateway at {gateway} has no endpoint {endpoint!r} (nor a route of that "
                f"name) for judge {judge}; it has {sorted(served.kinds)}. Add it to the gateway "
                "config or pick another with --judge-endpoint (or NAME@ENDPOINT in --judge)."
            )
        if kind != CHAT:
            what = "route" if endpoint in served.routes else "endpoint"
            raise PreflightError(
                f"The gateway {what} {endpoint!r} at {gateway} is a {kind} {what}; judges need "
                f"an {CHAT} one."
            )


def _check_server_gateway(
    resolved: Resolved, judge_endpoints: dict[str, str], served: Served | None
) -> None:
    """The `mlflow server` answers with an AI Gateway that has each judge endpoint."""
    server = mask(resolved.gateway_url.removesuffix(SERVER_GATEWAY_PATH))
    if served is None:
        raise PreflightError(
            f"The judges ask the AI Gateway of the MLflow server at {server} (gateway:/NAME), but "
            "no server there answers its gateway API. Start `mlflow server` (MLflow 3.9 or newer, "
            "a SQL store) at that address, or check --tracking-uri / MLFLOW_GATEWAY_URI."
        )
    for endpoint, judge in judge_endpoints.items():
        if endpoint not in served.kinds:
            raise PreflightError(
                f"The AI Gateway of the MLflow server at {server} has no endpoint {endpoint!r} "
                f"for judge {judge}; it has {sorted(served.kinds)}. Create it in the server's UI "
                f"({server}/#/gateway) or through its REST API (docs/servers.md: 'Judges through "
                "the MLflow server's AI Gateway'), or pick another with --judge-endpoint "
                "gateway:/NAME."
            )


def check_judges_answer(
    serving: ServingOptions, resolved: Resolved, judge_endpoints: dict[str, str], served: Served
) -> None:
    """A one-token call to each endpoint that answers for a judge (each destination of a route:
    the gateway would pick one at random), through the gateway, as the judges will call it."""
    asked: set[str] = set()
    for endpoint, judge in sorted(judge_endpoints.items()):
        for destination in served.destinations(endpoint):
            if destination in asked:
                continue
            asked.add(destination)
            body = {"model": destination, **PROBE}
            url = resolved.gateway_url.rstrip("/") + "/v1/chat/completions"
            status, text = post_json(url, body, serving.timeout)
            if status != 200:
                raise PreflightError(
                    _unreachable(
                        serving, resolved, served, endpoint, judge, destination, status, text
                    )
                )


def _gateway_name(resolved: Resolved) -> str:
    """'gateway at URL', or for the AI Gateway of an `mlflow server` that server's."""
    if is_server_gateway(resolved.gateway_url):
        server = resolved.gateway_url.removesuffix(SERVER_GATEWAY_PATH)
        return f"AI Gateway of the MLflow server at {mask(server)}"
    return f"gateway at {mask(resolved.gateway_url)}"


def _detail(text: str) -> str:
    """The gateway's error in a few words: its `detail` or `error.message`, else the text."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        found = data.get("detail") or (error.get("message") if isinstance(error, dict) else error)
        text = str(found or text)
    text = " ".join(text.split())
    return mask(text if len(text) <= 200 else text[:199] + "…")


def _unreachable(
    serving: ServingOptions,
    resolved: Resolved,
    served: Served,
    endpoint: str,
    judge: str,
    destination: str,
    status: int | None,
    text: str,
) -> str:
    """The paragraph for a judge endpoint whose model does not answer: which model at which URL
    (from the gateway config, or the gateway's words), why, and what to start."""
    ours = resolved.served is not None
    upstream = served.upstreams.get(destination)
    model = upstream.model if upstream is not None else None
    url = upstream.base_url if upstream is not None else None
    in_server = is_server_gateway(resolved.gateway_url)
    source = "" if ours or url is None else f" (per {serving.gateway_config})"
    if in_server:  # its endpoints' URLs are the server's own word, from their secrets
        source = ""
    answers: bool | None = None  # whether anything answers at `url`; None: not known
    if url is None and (found := _CANNOT_CONNECT.search(text)):
        url, answers = f"http://{found.group(1)}", False
    elif url is not None:
        answers = http_status(url.rstrip("/") + "/models") is not None
    got = (
        f"no reply in {serving.timeout:g} s ({mask(text)})"
        if status is None
        else f"HTTP {status} ({_detail(text)})"
    )
    name = f"endpoint {endpoint!r}"
    if destination != endpoint:
        name = f"route {endpoint!r} (destination endpoint {destination!r})"
    what = f"model {model}" if model else "model"
    where = f" at {mask(url)}{source}" if url else ""
    head = (
        f"The {_gateway_name(resolved)} answers, but its {name} for judge {judge} "
        f"cannot reach its {what}{where}: a one-token test call through the gateway got {got}"
    )
    listed = list_models(url) if url is not None and answers else None
    if url is not None and answers is False:
        head += ", and nothing answers there"
        todo = hints.start_hint(url, model or "the judge's model")
        if in_server:
            todo += (
                ", or point the endpoint's model at a server that runs (the api_base of its "
                "secret, in the MLflow server's AI Gateway page)"
            )
        elif not ours and serving.stack == "auto":
            todo += (
                ", or stop that gateway (this tool did not start it) so that --stack auto starts "
                f"its own, judging with the embedded {EMBEDDED_MODEL_ID}"
            )
        elif not ours:
            todo += ", or point the endpoint at a server that runs (in the gateway's config)"
    elif url is not None and model is not None and listed is not None and model not in listed:
        head += f"; the server there lists {listed}, not {model}"
        todo = hints.load_hint(url, model)
    elif url is not None:
        todo = "the server there answers: that gateway's log says why the call failed"
    else:  # the gateway's API does not say where its models are served
        todo = (
            "start the server behind that endpoint (see the gateway's config), or pass that "
            "config with --gateway-config for this message to name it"
        )
    return f"{head}. {todo[0].upper()}{todo[1:]}."
