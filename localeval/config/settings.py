"""The run's configuration: every option declared once, as a field of the frozen `EvalConfig`.

Precedence, highest first: command-line flag > config file (--config) > environment variable >
default. Defaults are the article's setup: LM Studio on :1234, the gateway on :5002.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import EXIT_CODES_HELP, ConfigError
from ..prompts import LAYOUT_PREFIX, LAYOUTS
from ..redact import mask
from ..types import CONTEXT, GROUND_TRUTH, INPUTS, JudgeSpec, ModelSpec, Threshold
from . import options as o
from . import values as v
from .argv import Parser
from .options import option

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILTIN_JUDGES = (
    "answer_similarity",
    "answer_correctness",
    "answer_relevance",
    "relevance",
    "faithfulness",
)
STACKS = ("auto", "external", "embedded")
# auto: json when the judge is the embedded Gemma 3 270M (text verdicts: 10 of 10 unscored on
# data/sample_qa.csv; json: 0 of 10), MLflow's text format for any other judge.
JUDGE_FORMATS = ("auto", "text", "json")
TEMPERATURE = v.TEMPERATURE
# A judge endpoint of the AI Gateway inside `mlflow server` (MLflow 3.9+; its successor to the
# YAML gateway): `gateway:/NAME`, answered at <server>/gateway/mlflow/v1/chat/completions.
SERVER_GATEWAY_PREFIX = "gateway:/"
SERVER_GATEWAY_PATH = "/gateway/mlflow"


@dataclass(frozen=True)
class EvalConfig:
    """Everything one invocation needs, resolved from flags, config file, environment, defaults."""

    data: Path = option(
        REPO_ROOT / "data" / "article_qa.csv",
        "dataset file (.csv, .json, .jsonl, .parquet)",
        parse=o.path, env="EVAL_DATA", metavar="PATH",
    )  # fmt: skip
    model: tuple[str, ...] = option(
        ("google/gemma-3-12b",),
        "candidate model id, repeatable; ID@URL gives it its own server",
        parse=v.strings, env="EVAL_MODEL", repeat=True, metavar="ID", aliases=("models",),
    )  # fmt: skip
    base_url: str = option(
        "http://localhost:1234/v1",
        "OpenAI-compatible base URL of the candidate server",
        parse=o.text, env="OPENAI_BASE_URL", metavar="URL",
    )  # fmt: skip
    system_prompt: str = option(
        "Answer the following question in two sentences",
        "system prompt sent before each question",
        parse=o.text, metavar="TEXT",
    )  # fmt: skip
    temperature: float = option(0.7, "candidate sampling temperature", parse=TEMPERATURE)
    max_tokens: int = option(
        256, "candidate answer limit, sent as max_tokens", parse=o.integer(1), metavar="N"
    )
    gateway_url: str = option(
        "http://localhost:5002",
        "MLflow AI Gateway URL",
        parse=lambda v: o.text(v).rstrip("/"), env="MLFLOW_DEPLOYMENTS_TARGET", metavar="URL",
    )  # fmt: skip
    gateway_config: Path = option(
        REPO_ROOT / "gateway_config.yaml",
        "gateway config for a gateway we start",
        parse=o.path, metavar="PATH",
    )  # fmt: skip
    judge: tuple[JudgeSpec, ...] = option(
        (JudgeSpec("answer_similarity", ()),),
        "judge metric, repeatable or comma-separated: " + ", ".join(BUILTIN_JUDGES)
        + "; NAME@EP routes it to gateway endpoint EP, NAME@EP1+EP2 asks several judges",
        parse=v.judges, repeat=True, metavar="NAME", aliases=("judges",),
    )  # fmt: skip
    judges_file: Path | None = option(
        None, "YAML file of custom judges (see examples/judges.yaml)", parse=o.path, metavar="PATH"
    )
    judge_format: str = option(
        "auto",
        "text: MLflow's 'score:' reply; json: ask for a JSON verdict with response_format "
        "json_object (falls back to text if the server refuses it); auto: json when the judge "
        "is the embedded model, else text",
        parse=o.choice(*JUDGE_FORMATS),
    )  # fmt: skip
    judge_prompt_layout: str = option(
        LAYOUT_PREFIX,
        f"the order of a judge prompt's parts: {LAYOUT_PREFIX} (MLflow's words, the fixed rubric "
        "first and the row last: local servers reuse the common prefix) or mlflow-v1 (MLflow's "
        "order)",
        parse=o.choice(*LAYOUTS),
    )  # fmt: skip
    judge_repeats: int = option(
        1, "judge each row K times (self-consistency)", parse=o.integer(1), metavar="K"
    )
    fail_under: tuple[Threshold, ...] = option(
        (),
        "CI gate, repeatable: exit 4 when METRIC (e.g. answer_similarity/v1/mean, or "
        ".../ci_low for the interval's lower bound) is below VALUE or missing",
        parse=v.thresholds, repeat=True, metavar="METRIC=VALUE",
    )  # fmt: skip
    baseline: str | None = option(
        None,
        "compare with an earlier run on the same data, row by row: its run id, or 'last' (the "
        "newest finished run of the experiment on the same dataset)",
        parse=o.text, metavar="RUN_ID|last",
    )  # fmt: skip
    fail_if_worse: bool = option(
        False,
        "CI gate: exit 4 when a judge's 95%% interval against --baseline lies below zero",
        parse=o.boolean, switch=True,
    )  # fmt: skip
    run_name: str | None = option(
        None,
        "the MLflow run's name (the parent run's with several models); by default the model id "
        "and the start of the run id, so two runs of one model are told apart",
        parse=o.text, metavar="NAME",
    )  # fmt: skip
    pairwise: bool = option(
        False,
        "head to head: with several models, a judge compares every pair of models' answers on "
        "each row, in both orders (2 judge calls per pair and row), beside the judges' grades",
        parse=o.boolean, switch=True,
    )  # fmt: skip
    judge_endpoint: str = option(
        "chat",
        "gateway endpoint for judges without @ENDPOINT; gateway:/NAME: an endpoint of the AI "
        "Gateway inside the `mlflow server` of --tracking-uri (or MLFLOW_GATEWAY_URI)",
        parse=o.text,
        metavar="NAME",
    )
    judge_temperature: float = option(0.0, "judge sampling temperature", parse=TEMPERATURE)
    # A verdict is a score line and a sentence or two of justification (40-80 tokens); a verdict
    # cut off before its score is asked once more, with 2x the budget, only when it was still
    # reasoning (judging.grading.RAISED_BUDGET).
    judge_max_tokens: int = option(
        120, "judge reply limit, sent as max_tokens", parse=o.integer(1), metavar="N"
    )
    tracking_uri: str | None = option(
        None,
        "MLflow tracking URI",
        parse=o.text, env="MLFLOW_TRACKING_URI", metavar="URI",
        default_text="sqlite:///mlflow.db in the working folder",
    )  # fmt: skip
    experiment: str = option(
        "local-llm-judge", "MLflow experiment name",
        parse=o.text, env="MLFLOW_EXPERIMENT_NAME", metavar="NAME",
    )  # fmt: skip
    tag: tuple[tuple[str, str], ...] = option(
        (),
        "MLflow run tag, repeatable: tag the runs of one job (its shards, its machines) the "
        "same; mlflow.parentRunId=RUN_ID shows the run under that run in the MLflow UI",
        parse=v.tags, repeat=True, metavar="KEY=VALUE", aliases=("tags",),
    )  # fmt: skip
    shard: tuple[int, int] | None = option(
        None,
        "evaluate part K of N of the data file (contiguous rows; a row's id stays its row number "
        "in the file), to split a big file over machines: each part is its own run",
        parse=v.shard, metavar="K/N",
    )  # fmt: skip
    report: Path | None = option(
        None,
        "also write the HTML report (logged with the run as report.html) to PATH",
        parse=o.path, metavar="PATH",
    )  # fmt: skip
    output: Path | None = option(
        None,
        "write per-row results to PATH (.jsonl or .csv) and the aggregates beside it as "
        "NAME.aggregates.json",
        parse=v.output, metavar="PATH",
    )  # fmt: skip
    stack: str = option(
        "auto",
        "auto: use what answers, start what is missing; external: start nothing; embedded: "
        "start our own llama.cpp server and gateway",
        parse=o.choice(*STACKS),
    )  # fmt: skip
    concurrency: int = option(
        4,
        "parallel LLM calls; unless given, a judge whose endpoints reach several servers (a "
        "gateway route's destinations) gets N for each",
        parse=o.integer(1), metavar="N",
    )  # fmt: skip
    timeout: float = option(
        120.0, "seconds to wait for one LLM reply", parse=o.number(above=0), metavar="S"
    )
    max_retries: int = option(
        3,
        "retries of a failed LLM call (connection, timeout, 429, 5xx)",
        parse=o.integer(0), metavar="N",
    )  # fmt: skip
    cache_dir: Path = option(
        Path(".mlflow_eval_cache"), "where replies are cached",
        parse=o.path, env="EVAL_CACHE_DIR", metavar="PATH",
    )  # fmt: skip
    no_cache: bool = option(False, "neither read nor write the cache", parse=o.boolean, switch=True)
    refresh: bool = option(
        False,
        "ignore cached replies (new replies are still stored)",
        parse=o.boolean, switch=True,
    )  # fmt: skip
    quiet: bool = option(False, "no progress output", parse=o.boolean, switch=True)
    rows: str = option(
        "compact",
        "the per-row listing in the terminal: compact (failed and unscored rows first, long "
        "texts cut), all (every row in full), failed (only failed and unscored rows, in full), "
        "none",
        parse=o.choice("compact", "all", "failed", "none"),
    )  # fmt: skip
    verbose: bool = option(
        False, "also print every metric in the terminal", parse=o.boolean, switch=True
    )
    no_traces: bool = option(
        False,
        "no trace per row (MLflow's Evaluation runs page then does not list the run)",
        parse=o.boolean, switch=True,
    )  # fmt: skip
    answer_col: tuple[str, ...] = option(
        (),
        "judge the answers already in this data column (from logs, another system, or written by "
        "hand): no candidate model and no candidate call; twice with --pairwise, the two columns "
        "head to head (a column human_preference, A/B/tie, is a person's pick)",
        parse=v.strings, repeat=True, metavar="COL",
    )  # fmt: skip
    human_col: tuple[str, ...] = option(
        (),
        "a person's grades for some rows (empty cells: unlabelled), repeatable; JUDGE=COL for "
        "one judge, COL alone with one judge; a column human_<judge> is read without this",
        parse=v.strings, repeat=True, metavar="[JUDGE=]COL",
    )  # fmt: skip
    agreement: str | None = option(
        None,
        "make no LLM call: read the human feedback people gave in MLflow's UI to run RUN_ID's "
        "rows, and log the judge-vs-human agreement to that run",
        parse=o.text, metavar="RUN_ID",
    )  # fmt: skip
    input_col: str = option(INPUTS, "data column holding the question", parse=o.text, metavar="COL")
    turns_col: str = option(
        "turns",
        "data column holding a conversation's user turns (a list): one row per conversation, "
        "answered turn by turn, each turn judged with the dialogue before it",
        parse=o.text, metavar="COL",
    )  # fmt: skip
    judge_turns: str = option(
        "all",
        "in conversations, the turns the judges grade: all, or last (the others are not "
        "applicable)",
        parse=o.choice("all", "last"),
    )  # fmt: skip
    require_reference: bool = option(
        False,
        "stop at a row (or turn) without a reference when a judge needs one; by default such "
        "rows are not applicable to that judge (counted, not graded) and other judges grade them",
        parse=o.boolean, switch=True,
    )  # fmt: skip
    target_col: str = option(
        GROUND_TRUTH, "data column holding the expected answer", parse=o.text, metavar="COL"
    )
    context_col: str = option(
        CONTEXT, "data column holding the retrieval context", parse=o.text, metavar="COL"
    )
    # The options the user set, each with how (`--model`, `'models:' in run.yaml`, `$EVAL_MODEL`).
    given: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def models(self) -> tuple[ModelSpec, ...]:
        """The candidate models: `ID` on --base-url, or `ID@URL` on a server of its own."""
        out = []
        for item in self.model:
            model_id, _, url = item.partition("@")
            out.append(ModelSpec(model_id, url or self.base_url))
        return tuple(out)

    def url_given(self, model_id: str) -> str | None:
        """How the user set this model's server URL (`--base-url`, `the URL in --model
        ID@URL`, `$EVAL_BASE_URL`...), or None when it is the default."""
        for item in self.model:
            if item.partition("@")[0] == model_id and item.partition("@")[2]:
                return f"the URL in {self.given.get('model', '--model')} {model_id}@URL"
        return self.given.get("base_url")

    @property
    def model_given(self) -> bool:
        """False: the default id, which the embedded stack replaces with its own."""
        return "model" in self.given

    @property
    def judges(self) -> tuple[JudgeSpec, ...]:
        """The built-in judges, each with its endpoints (--judge-endpoint if none was named)."""
        default = (self.judge_endpoint,)
        return tuple(replace(j, endpoints=j.endpoints or default) for j in self.judge)

    def loggable(self) -> dict[str, str]:
        """The resolved config as flat params for MLflow (no API key is held here; passwords in
        URLs are masked)."""
        out: dict[str, str] = {}
        for key, value in asdict(self).items():
            if key == "given":
                continue
            if key == "model":
                key, value = "models", ",".join(f"{m.id}@{m.base_url}" for m in self.models)
            elif key == "judge":
                key, value = (
                    "judges",
                    ",".join(f"{j.name}@{'+'.join(j.endpoints)}" for j in self.judges),
                )
            elif key == "fail_under":
                value = ",".join(f"{t.metric}={t.value}" for t in self.fail_under)
            elif key == "tag":
                value = ",".join(f"{k}={v}" for k, v in self.tag)
            elif key == "shard" and self.shard is not None:
                value = "{}/{}".format(*self.shard)
            out[key] = mask(value)  # a password in any URL (tracking URI, base URL, gateway)
        return out


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mlflow_evaluate.py",
        description="Evaluate a local OpenAI-compatible LLM with LLM-as-a-judge metrics in MLflow; "
        "the judge runs behind a self-hosted MLflow AI Gateway.",
        epilog="Precedence: command-line flag > --config file > environment variable > default.\n"
        "API keys come only from the environment (OPENAI_API_KEY; a placeholder for local "
        "servers).\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="YAML file holding any of the options below (keys as flag names)",
    )
    o.add_arguments(parser, EvalConfig)
    return parser


def resolve(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> EvalConfig:
    """Parse flags, read the config file and environment, and return the frozen config."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    file_values: dict[str, Any] = {}
    file_keys: dict[str, str] = {}
    if args.config is not None:
        loaded = o.load_yaml(args.config, "Config file", "Check the --config path.")
        file_values, file_keys = o.file_options(EvalConfig, loaded, args.config)
    values, given = o.resolve(EvalConfig, vars(args), file_values, args.config, environ, file_keys)
    config = EvalConfig(**values, given=given)
    ids = [m.id for m in config.models]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"The same model id appears twice in --model: {', '.join(ids)}.")
    return _server_gateway(config, environ)


def _server_gateway(config: EvalConfig, environ: Mapping[str, str]) -> EvalConfig:
    """Judge endpoints named `gateway:/NAME`: the AI Gateway inside an `mlflow server`, the
    tracking server's (--tracking-uri http://...) or MLFLOW_GATEWAY_URI's. Rewritten here, once:
    the gateway URL becomes that server's OpenAI-compatible base and the endpoints their names,
    so the stages below ask it as they ask a YAML gateway."""
    named = [e for j in config.judge for e in j.endpoints]
    if "judge_endpoint" in config.given or not named:  # the default follows the judges named
        named.append(config.judge_endpoint)
    server = [e for e in named if e.startswith(SERVER_GATEWAY_PREFIX)]
    if not server:
        return config
    if len(server) != len(named):
        raise ConfigError(
            f"Judge endpoints {sorted(set(named))}: some name the MLflow server's AI Gateway "
            f"({SERVER_GATEWAY_PREFIX}NAME), some a YAML gateway; a run asks one gateway. Name "
            f"every judge endpoint as {SERVER_GATEWAY_PREFIX}NAME, or none."
        )
    base = environ.get("MLFLOW_GATEWAY_URI") or config.tracking_uri or ""
    if not base.startswith(("http://", "https://")):
        raise ConfigError(
            f"--judge-endpoint {server[0]}: {SERVER_GATEWAY_PREFIX}NAME is an endpoint of the AI "
            "Gateway inside an `mlflow server`, and this run names no such server. Pass its URL "
            "with --tracking-uri http://HOST:PORT (the run is then logged there too) or "
            "MLFLOW_GATEWAY_URI=http://HOST:PORT."
        )

    def name(endpoint: str) -> str:
        return endpoint.removeprefix(SERVER_GATEWAY_PREFIX)

    return replace(
        config,
        gateway_url=base.rstrip("/") + SERVER_GATEWAY_PATH,
        judge_endpoint=name(config.judge_endpoint),
        judge=tuple(replace(j, endpoints=tuple(map(name, j.endpoints))) for j in config.judge),
    )
