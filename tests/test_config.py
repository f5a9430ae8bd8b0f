"""Configuration: precedence flag > config file > environment > default, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from localeval.config.settings import resolve
from localeval.errors import ConfigError


def test_defaults_follow_the_article():
    config = resolve([], environ={})
    assert config.models[0].id == "google/gemma-3-12b"
    assert config.models[0].base_url == "http://localhost:1234/v1"
    assert config.system_prompt == "Answer the following question in two sentences"
    assert (config.temperature, config.max_tokens) == (0.7, 256)
    assert config.gateway_url == "http://localhost:5002"
    assert [(j.name, j.endpoints) for j in config.judges] == [("answer_similarity", ("chat",))]
    assert config.tracking_uri is None and config.stack == "auto" and not config.model_given


def test_precedence_flag_over_file_over_environment(tmp_path: Path):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("temperature: 0.3\nmax_tokens: 99\nexperiment: from-file\n", "utf-8")
    env = {
        "MLFLOW_EXPERIMENT_NAME": "from-env",
        "EVAL_MODEL": "env-model",
        "MLFLOW_TRACKING_URI": "sqlite:///env.db",
    }
    config = resolve(["--config", str(cfg), "--temperature", "0.1"], environ=env)
    assert config.temperature == 0.1  # flag beats file
    assert config.max_tokens == 99  # file beats default
    assert config.experiment == "from-file"  # file beats environment
    assert config.models[0].id == "env-model"  # environment beats default
    assert config.tracking_uri == "sqlite:///env.db"
    assert config.model_given


def test_models_judges_and_gates_parse(tmp_path: Path):
    config = resolve(
        [
            "--model",
            "a",
            "--model",
            "b@http://127.0.0.1:9/v1",
            "--judge",
            "answer_similarity@chat+chat2,faithfulness",
            "--fail-under",
            "answer_similarity/v1/mean=3.5",
        ],
        environ={},
    )
    assert [(m.id, m.base_url) for m in config.models] == [
        ("a", "http://localhost:1234/v1"),
        ("b", "http://127.0.0.1:9/v1"),
    ]
    assert config.judges[0].endpoints == ("chat", "chat2")
    assert config.judges[1].endpoints == ("chat",)
    assert config.fail_under[0].metric == "answer_similarity/v1/mean"
    assert config.fail_under[0].value == 3.5


def test_config_file_judges_with_their_own_parameters(tmp_path: Path):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        "judges:\n  - name: relevance\n    endpoints: [chat, chat2]\n    temperature: 0.5\n"
        "    max_tokens: 50\nmodels: [m1, m2]\n",
        "utf-8",
    )
    config = resolve(["--config", str(cfg)], environ={})
    (judge,) = config.judges
    assert (judge.name, judge.endpoints, judge.temperature, judge.max_tokens) == (
        "relevance",
        ("chat", "chat2"),
        0.5,
        50,
    )
    assert [m.id for m in config.models] == ["m1", "m2"]


def test_loggable_config_has_no_secret(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-SECRET")
    params = resolve([], environ=None).loggable()
    assert "sk-SECRET" not in str(params)
    assert params["max_tokens"] == "256"


@pytest.mark.parametrize(
    ("args", "content", "needle"),
    [
        pytest.param(["--temperature", "3"], None, "between 0 and 2", id="temperature_range"),
        pytest.param(["--max-tokens", "0"], None, "at least 1", id="max_tokens_zero"),
        pytest.param(["--fail-under", "mean"], None, "METRIC=VALUE", id="gate_syntax"),
        pytest.param(["--model", "a", "--model", "a"], None, "twice", id="duplicate_model"),
        pytest.param([], "colour: red\n", "key 'colour'", id="unknown_file_key"),
        pytest.param([], "- a\n- b\n", "must be a mapping", id="file_not_mapping"),
        pytest.param([], "temperature: [\n", "not valid YAML", id="bad_yaml"),
        pytest.param([], "judges:\n  - name: x\n    colour: 1\n", "judges[0]", id="bad_judge_key"),
    ],
)
def test_bad_config_is_a_config_error(tmp_path: Path, args, content, needle):
    if content is not None:
        cfg = tmp_path / "eval.yaml"
        cfg.write_text(content, "utf-8")
        args = ["--config", str(cfg), *args]
    with pytest.raises(ConfigError, match=None) as err:
        resolve(args, environ={})
    assert needle in str(err.value)


# ---- a fault on the command line: one paragraph, exit 2, no usage block ----------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--max-tokns", "5"],
            "unknown option --max-tokns; did you mean --max-tokens? ('--help' lists every option)",
            id="misspelt",
        ),
        pytest.param(
            ["--max-tokns=5"],
            "unknown option --max-tokns; did you mean --max-tokens? ('--help' lists every option)",
            id="misspelt_with_value",
        ),
        pytest.param(
            ["--max-tokns", "5", "--temprature=1", "--frobnicate"],
            "unknown options --max-tokns (did you mean --max-tokens?), --temprature (did you mean "
            "--temperature?), --frobnicate ('--help' lists every option)",
            id="several",
        ),
        pytest.param(["--models", "a"], "did you mean --model?", id="config_file_alias"),
        pytest.param(
            ["--max-tokens"],
            "option --max-tokens needs a value (--max-tokens N)",
            id="missing_value",
        ),
        pytest.param(
            ["--quiet=yes"], "option --quiet is a switch and takes no value", id="value_to_switch"
        ),
        pytest.param(
            ["--no"], "ambiguous option --no: it could be --no-cache or --no-traces", id="ambiguous"
        ),
        pytest.param(
            ["--model", "a", "b"],
            "unexpected argument b: every value follows its option",
            id="stray_value",
        ),
    ],
)
def test_command_line_fault_is_one_paragraph_without_usage(capsys, args, message):
    from conftest import evaluate

    code, out, err = evaluate(args, capsys)
    assert code == 2, out + err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "usage:" not in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        pytest.param(
            ["--fail-under", "answer_similarity/v1/mean=abc"],
            None,
            "Invalid value for flag --fail-under: 'answer_similarity/v1/mean=abc' is not "
            "METRIC=VALUE with a number.",
            id="gate",
        ),
        pytest.param(
            ["--fail-under", "answer_similarity/v1/mean=3", "--fail-under", "p90"],
            None,
            "Invalid value for flag --fail-under: 'p90' is not METRIC=VALUE.",
            id="second_gate",
        ),
        pytest.param(
            ["--tag", "job=a,nightly"],
            None,
            "Invalid value for flag --tag: 'nightly' is not KEY=VALUE.",
            id="tag",
        ),
        pytest.param(
            ["--max-tokens", "many"],
            None,
            "Invalid value 'many' for flag --max-tokens: must be a whole number.",
            id="integer",
        ),
        pytest.param(
            ["--temperature", "warm"],
            None,
            "Invalid value 'warm' for flag --temperature: must be a number.",
            id="number",
        ),
        pytest.param(
            [],
            "judges:\n  - answer_similarity\n  - name: x\n    colour: 1\n",
            "Invalid value {name: x, colour: 1} for config file ",
            id="file_judge",
        ),
        pytest.param([], "tags: {job: a}\n", "key tags: must be a single value", id="file_tags"),
    ],
)
def test_bad_value_names_the_one_item_as_written(tmp_path: Path, args, content, message):
    if content is not None:
        cfg = tmp_path / "eval.yaml"
        cfg.write_text(content, "utf-8")
        args = ["--config", str(cfg), *args]
    with pytest.raises(ConfigError) as err:
        resolve(args, environ={})
    assert message in str(err.value)
    assert "['" not in str(err.value) and "{'" not in str(err.value)  # no Python repr


def test_a_judges_combination_is_set_in_a_config_file_and_checked(tmp_path: Path):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        "judges:\n  - name: answer_similarity\n    endpoints: [chat, chat2]\n"
        "    combine: majority\n  - name: faithfulness\n",
        "utf-8",
    )
    config = resolve(["--config", str(cfg)], environ={})
    assert [(j.name, j.combine) for j in config.judges] == [
        ("answer_similarity", "majority"),
        ("faithfulness", "mean"),  # the default: the mean of the scored verdicts
    ]
    cfg.write_text("judges:\n  - name: answer_similarity\n    combine: median\n", "utf-8")
    with pytest.raises(ConfigError, match=r"judges\[0\]\.combine") as err:
        resolve(["--config", str(cfg)], environ={})
    assert "majority" in str(err.value)  # the choices are named
