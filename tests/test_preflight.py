"""Preflight that names the real fault: a model nothing serves, each with its own URL and advice
for that server; a judge endpoint whose model does not answer; routes over several servers.

Against the fake server (it also plays the gateway) and closed ports: fast, no real gateway.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from conftest import evaluate
from fake_openai import FakeOpenAI, Fault

from localeval.serving import hints


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the socket goes


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _run(tracking_uri: str, experiment: str):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


def _gateway_config(path: Path, endpoints: dict[str, tuple[str, str]], routes: str = "") -> Path:
    """A gateway config: endpoint name -> (model, base URL), plus raw `routes:` YAML."""
    text = "endpoints:\n"
    for name, (model, url) in endpoints.items():
        text += (
            f"  - name: {name}\n    endpoint_type: llm/v1/chat\n    model:\n"
            f"      provider: openai\n      name: {model}\n      config:\n"
            f"        openai_api_key: $OPENAI_API_KEY\n        openai_api_base: {url}\n"
        )
    path.write_text(text + routes, encoding="utf-8")
    return path


# ---- C: a model nothing serves ----------------------------------------------------------------


def test_advice_fits_the_server_each_default_port_means():
    assert "LM Studio" in hints.start_hint("http://localhost:1234/v1", "m")
    assert "ollama pull m" in hints.start_hint("http://localhost:11434/v1", "m")
    assert "vllm serve m" in hints.start_hint("http://127.0.0.1:8000/v1", "m")
    assert "llama-server" in hints.start_hint("http://localhost:8080/v1", "m")
    other = hints.start_hint("http://me:secret@gpu-box:9999/v1", "m")
    assert "http://me:***@gpu-box:9999/v1" in other and "secret" not in other
    assert "ollama pull m" in hints.load_hint("http://localhost:11434/v1", "m")
    assert "lms load m" in hints.load_hint("http://localhost:1234/v1", "m")


@pytest.mark.parametrize(
    ("given", "undo"),
    [
        pytest.param("flag", "Or drop --model to evaluate the embedded model instead.", id="flag"),
        pytest.param("file", "Or remove 'models:' from {config} to evaluate", id="config_key"),
        pytest.param("env", "Or unset EVAL_MODEL to evaluate", id="environment"),
    ],
)
def test_each_missing_model_is_named_with_its_own_url_and_server(
    given, undo, tracking_uri, tmp_path, capsys, monkeypatch
):
    """Issue 13 item 6: qwen3-8b was on :11434 but the message said :1234, with LM Studio advice
    for both; a model from a config file got 'drop --model'."""
    if _listening(1234) or _listening(11434):
        pytest.skip("a server listens on 1234 or 11434 here")
    models = ["google/gemma-3-12b", "qwen3-8b@http://localhost:11434/v1"]
    args = ["--stack", "auto", "--base-url", "http://localhost:1234/v1",
            "--tracking-uri", tracking_uri, "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    config = tmp_path / "run.yaml"
    monkeypatch.delenv("EVAL_MODEL", raising=False)
    if given == "flag":
        args += ["--model", models[0], "--model", models[1]]
    elif given == "file":
        config.write_text(f"models:\n  - {models[0]}\n  - {models[1]}\n", encoding="utf-8")
        args += ["--config", str(config)]
    else:
        monkeypatch.setenv("EVAL_MODEL", ",".join(models))
    code, _, err = evaluate(args, capsys)
    assert code == 2 and "Traceback" not in err
    assert (
        "No server answers for model google/gemma-3-12b at http://localhost:1234/v1 or qwen3-8b "
        "at http://localhost:11434/v1, and the embedded stack serves only 'gemma-3-270m' or "
        "'gemma-3-270m-terse'."
    ) in err
    assert "For google/gemma-3-12b, start LM Studio's local server" in err
    assert "for qwen3-8b, start Ollama ('ollama serve') and pull qwen3-8b" in err
    assert undo.format(config=config) in err
    assert len(err.strip().splitlines()) == 1  # one paragraph


def test_external_stack_names_every_model_without_a_server(fake, run_args, capsys):
    closed = f"http://127.0.0.1:{_closed_port()}/v1"
    args = list(run_args)
    args[args.index("--model") + 1] = f"first@{closed}"
    args += ["--model", "fake-model"]
    code, _, err = evaluate(args, capsys)
    assert code == 2 and "Traceback" not in err
    assert f"No OpenAI-compatible server answers at {closed} for model first (GET /models)" in err
    assert "correct the URL in --model first@URL" in err
    assert fake.chat_calls == 0 and fake.probes == []


def test_a_model_the_server_does_not_list_names_the_list_and_the_option(
    fake, run_args, tmp_path, capsys
):
    config = tmp_path / "run.yaml"
    config.write_text("model: other-model\n", encoding="utf-8")
    args = list(run_args)
    del args[args.index("--model") : args.index("--model") + 2]
    code, _, err = evaluate(args + ["--config", str(config)], capsys)
    assert code == 2
    assert (
        f"The server at {fake.url} does not serve model 'other-model'; it lists ['fake-model']. "
        f"Load other-model on the server at {fake.url}, or name one of the listed ids in "
        f"'model:' in {config}."
    ) in err


# ---- B: a judge endpoint whose model does not answer -------------------------------------------


@pytest.mark.parametrize("stack", ["external", "auto"])
def test_judge_endpoint_that_cannot_reach_its_model_stops_before_any_row(
    stack, fake, run_args, tmp_path, capsys
):
    """Issue 13 item 3: a gateway started by hand whose `chat` points at a server that is not
    running. Every row ended unscored (HTTP 500), exit 3; now exit 2 before any call."""
    closed = f"http://127.0.0.1:{_closed_port()}/v1"
    fake.gateway_models["chat"] = "judge-model"
    config = _gateway_config(tmp_path / "gw.yaml", {"chat": ("judge-model", closed)})
    fake.probe_reply = Fault(500, "Internal Server Error")  # what MLflow's gateway answers
    args = list(run_args)
    args[args.index("--stack") + 1] = stack
    code, _, err = evaluate(args + ["--gateway-config", str(config)], capsys)
    assert code == 2 and "Traceback" not in err
    assert (
        f"The gateway at {fake.root} answers, but its endpoint 'chat' for judge "
        f"answer_similarity cannot reach its model judge-model at {closed} (per {config}): a "
        "one-token test call through the gateway got HTTP 500 (Internal Server Error), and "
        "nothing answers there."
    ) in err
    assert (
        "Start the OpenAI-compatible server (LM Studio, Ollama, vLLM, llama.cpp's server...) "
        f"that serves judge-model at {closed}"
    ) in err
    if stack == "auto":
        assert "or stop that gateway (this tool did not start it) so that --stack auto" in err
        assert "judging with the embedded gemma-3-270m" in err
    else:
        assert "or point the endpoint at a server that runs" in err
    assert fake.requests == []  # no candidate call, no judge call
    assert [p["model"] for p in fake.probes] == ["chat"]


def test_the_gateways_words_name_the_server_it_cannot_reach(fake, run_args, tmp_path, capsys):
    if _listening(1234):
        pytest.skip("a server listens on 1234 here")
    words = "Cannot connect to host localhost:1234 ssl:default [Connect call failed]"
    fake.probe_reply = Fault.server_error(500, words)
    missing = tmp_path / "none.yaml"  # no config to say where the model is
    code, _, err = evaluate(run_args + ["--gateway-config", str(missing)], capsys)
    assert code == 2
    assert "cannot reach its model chat at http://localhost:1234: a one-token test call" in err
    assert "(Cannot connect to host localhost:1234 ssl:default [Connect call failed])" in err
    assert "and nothing answers there" in err
    assert "Start LM Studio's local server (Developer tab, or 'lms server start')" in err


def test_a_server_without_the_judges_model_is_told_to_load_it(fake, run_args, tmp_path, capsys):
    with FakeOpenAI(models=("other-model",)) as upstream:
        fake.gateway_models["chat"] = "judge-model"
        config = _gateway_config(tmp_path / "gw.yaml", {"chat": ("judge-model", upstream.url)})
        fake.probe_reply = Fault.server_error(404, "model not found")
        code, _, err = evaluate(run_args + ["--gateway-config", str(config)], capsys)
    assert code == 2
    assert "got HTTP 404 (model not found); the server there lists ['other-model']" in err
    assert f"Load judge-model on the server at {upstream.url}." in err


def test_no_test_call_when_every_verdict_is_cached(fake, run_args, capsys):
    assert evaluate(run_args, capsys)[0] == 0
    assert [p["model"] for p in fake.probes] == ["chat"]
    assert evaluate(run_args, capsys)[0] == 0  # every reply from the cache
    assert len(fake.probes) == 1 and fake.chat_calls == 4  # 2 answers + 2 verdicts, once


# ---- A: a judge endpoint that is a traffic-split route ------------------------------------------


def _route_fake() -> FakeOpenAI:
    def reply(body: dict) -> str:
        if body.get("model") == "chat":
            return "score: 4\njustification: Close to the target."
        return "A fake answer."

    fake = FakeOpenAI(
        models=("fake-model",),
        reply=reply,
        gateway_endpoints={"judge-a": "llm/v1/chat", "judge-b": "llm/v1/chat"},
        gateway_routes={"chat": ["judge-a", "judge-b"]},
    )
    fake.gateway_models.update({"judge-a": "model-a", "judge-b": "model-b"})
    return fake


def _args(fake: FakeOpenAI, tracking_uri: str, experiment: str, cache: Path) -> list[str]:
    return ["--stack", "external", "--model", "fake-model", "--base-url", fake.url,
            "--gateway-url", fake.root, "--tracking-uri", tracking_uri,
            "--experiment", experiment, "--cache-dir", str(cache), "--quiet"]  # fmt: skip


def test_a_route_judges_and_its_destinations_models_are_its_identity(
    tracking_uri, tmp_path, capsys, request
):
    experiment = request.node.name
    with _route_fake() as fake:
        args = _args(fake, tracking_uri, experiment, tmp_path / "cache")
        code, _, err = evaluate(args, capsys)
        assert code == 0, err
        params = _run(tracking_uri, experiment).data.params
        assert params["judge/answer_similarity"] == "chat (route[openai:model-a, openai:model-b])"
        # Two servers behind the route: the default 4 calls in flight for each.
        assert params["concurrency/judge/answer_similarity"] == "8"
        # Each destination was tested: the gateway would send a row to either.
        assert sorted(p["model"] for p in fake.probes) == ["judge-a", "judge-b"]
        assert len(fake.calls_for("chat")) == 2
        assert evaluate(args, capsys)[0] == 0  # cached: the same route, the same models
        assert len(fake.calls_for("chat")) == 2
        fake.gateway_models["judge-b"] = "model-c"  # a destination's model changed
        assert evaluate(args, capsys)[0] == 0
        assert len(fake.calls_for("chat")) == 4  # asked again: not the same judge any more


def test_explicit_concurrency_wins_over_the_per_server_default(
    tracking_uri, tmp_path, capsys, request
):
    experiment = request.node.name
    with _route_fake() as fake:
        args = _args(fake, tracking_uri, experiment, tmp_path / "cache") + ["--concurrency", "3"]
        assert evaluate(args, capsys)[0] == 0
    assert _run(tracking_uri, experiment).data.params["concurrency/judge/answer_similarity"] == "3"


def test_each_destination_of_a_route_is_tested(tracking_uri, tmp_path, capsys, request):
    """The gateway sends each call of a route to one destination at random: one that does not
    answer would leave some rows unscored. The message names the route and that destination."""
    closed = f"http://127.0.0.1:{_closed_port()}/v1"
    with _route_fake() as fake:
        config = _gateway_config(
            tmp_path / "gw.yaml", {"judge-a": ("model-a", fake.url), "judge-b": ("model-b", closed)}
        )
        fake.probe_reply = lambda body: (
            Fault(500, "Internal Server Error") if body["model"] == "judge-b" else "OK"
        )
        args = _args(fake, tracking_uri, request.node.name, tmp_path / "cache")
        code, _, err = evaluate(args + ["--gateway-config", str(config)], capsys)
        assert code == 2
        assert (
            "its route 'chat' (destination endpoint 'judge-b') for judge answer_similarity cannot "
            f"reach its model model-b at {closed} (per {config})"
        ) in err
        assert fake.requests == []
