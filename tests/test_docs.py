"""The documentation holds together: README.md stays short, every relative link and #anchor in
the READMEs, ARCHITECTURE.md and docs/ reaches a file and a heading, every docs page is on the
READMEs' map, and the mlflow_evaluate.py command lines in their shell blocks use only options the
program's parser takes, and data/ or examples/ files that exist. No server, no network."""

from __future__ import annotations

import re
import shlex
import unicodedata
from pathlib import Path

import pytest
from conftest import ROOT

from localeval.config import build_parser

README_MAX_LINES = 150
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", ROOT / "README.ja.md", ROOT / "ARCHITECTURE.md", *DOCS]
SHELL = {"bash", "shell", "sh", "console"}
ENTRY = "mlflow_evaluate.py"

FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) or ![alt](target), target without spaces, optionally "a title"
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
DATA_PATH = re.compile(r"(?<![\w./-])((?:data|examples)/[\w.-]+(?:/[\w.-]+)*)")


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def blocks(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The lines outside fenced code blocks (code lines blanked, so line numbers hold), and each
    fenced block as (its info word, its text)."""
    prose: list[str] = []
    found: list[tuple[str, str]] = []
    fence, info, body = None, "", []
    for line in text.splitlines():
        m = FENCE.match(line)
        if fence is None and m:
            fence, info, body = m.group(1), m.group(2).lower(), []
            prose.append("")
        elif fence is not None and m and m.group(1).startswith(fence) and not m.group(2):
            found.append((info, "\n".join(body)))
            fence = None
            prose.append("")
        elif fence is not None:
            body.append(line)
            prose.append("")
        else:
            prose.append(line)
    return prose, found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: links and code marks reduced to their text, lowercase,
    punctuation and symbols dropped (letters of any script, digits, '-', '_' and spaces kept),
    each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    kept = "".join(
        ch for ch in text if ch in "-_ " or unicodedata.category(ch)[0] in "LNM"
    )  # fmt: skip
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor, repeated headings numbered as GitHub does (x, x-1, x-2)."""
    prose, _ = blocks(page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in prose:
        if m := HEADING.match(line):
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of each markdown link outside code."""
    prose, _ = blocks(page.read_text(encoding="utf-8"))
    out = []
    for number, line in enumerate(prose, 1):
        for m in LINK.finditer(CODE_SPAN.sub("", line)):
            out.append((number, m.group(1)))
    return out


def broken_links(page: Path) -> list[str]:
    problems = []
    for number, target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, mailto:
            continue
        path, _, anchor = target.partition("#")
        goal = (page.parent / path).resolve() if path else page
        where = f"{_name(page)}:{number}: {target}"
        if not goal.exists():
            problems.append(f"{where}: no file {path}")
        elif anchor and goal.suffix == ".md" and anchor not in anchors(goal):
            problems.append(f"{where}: no heading #{anchor} in {_name(goal)}")
    return problems


def commands(page: Path) -> list[list[str]]:
    """The arguments after mlflow_evaluate.py on each command line of the page's shell blocks
    (backslash continuations joined, comments dropped, up to a shell operator)."""
    _, found = blocks(page.read_text(encoding="utf-8"))
    out = []
    for info, body in found:
        if info not in SHELL:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            out += _entry_arguments(line)
    return out


def _entry_arguments(line: str) -> list[list[str]]:
    if ENTRY not in line:
        return []
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    tokens = list(lexer)
    out = []
    for i, token in enumerate(tokens):
        if token.endswith(ENTRY):
            args = []
            for arg in tokens[i + 1 :]:
                if arg in {"&&", "||", "|", ";", "&", ")", "(", ">", ">>", "<"}:
                    break
                args.append(arg)
            out.append(args)
    return out


def inline_commands(page: Path) -> list[list[str]]:
    """The same for `code spans` in the prose that hold a whole mlflow_evaluate.py command."""
    prose, _ = blocks(page.read_text(encoding="utf-8"))
    text = "\n".join(prose)
    out = []
    for m in CODE_SPAN.finditer(text):
        span = m.group(2)
        if ENTRY in span and "…" not in span and re.match(r"(pipenv|python)", span):
            out += _entry_arguments(span)
    return out


def rejected(args: list[str]) -> list[str]:
    """What the program's own parser says against a command line, or nothing."""
    parser = build_parser()
    known = {s for action in parser._actions for s in action.option_strings}
    problems = [
        f"{flag}: not an option of mlflow_evaluate.py"
        for arg in args
        if arg.startswith("--") and (flag := arg.partition("=")[0]) not in known
    ]
    if not problems and "--help" not in args and "-h" not in args:
        try:
            parser.parse_args(args)
        except Exception as exc:  # the parser's faults are ConfigErrors with the reason
            problems.append(str(exc))
    return problems


# ---- the checks -------------------------------------------------------------------------------


def test_readme_reads_in_five_minutes():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_relative_links_reach_a_file_and_a_heading(page):
    assert page.exists()
    assert broken_links(page) == []


def test_every_docs_page_is_on_the_map():
    assert DOCS, "no docs/*.md"
    for readme in ("README.md", "README.ja.md"):
        targets = {t.partition("#")[0] for _, t in links(ROOT / readme)}
        missing = [_name(p) for p in DOCS if _name(p) not in targets]
        assert missing == [], f"{readme} does not link {missing}"
    assert "ARCHITECTURE.md" in {t.partition("#")[0] for _, t in links(ROOT / "README.md")}


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_command_lines_use_options_the_parser_takes(page):
    problems = [
        f"{_name(page)}: {ENTRY} {shlex.join(args)}: {why}"
        for args in commands(page) + inline_commands(page)
        for why in rejected(args)
    ]
    assert problems == []


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_data_and_example_files_in_shell_blocks_exist(page):
    _, found = blocks(page.read_text(encoding="utf-8"))
    named = {
        m.group(1).rstrip(".")
        for info, body in found
        if info in SHELL
        for m in DATA_PATH.finditer(body)
    }
    assert sorted(p for p in named if not (ROOT / p).exists()) == []


def test_the_readme_commands_are_checked():
    """The checks above see the README's commands: the main job, and flags in a block."""
    found = commands(ROOT / "README.md")
    assert [] in found  # `... pipenv run python mlflow_evaluate.py` of "Two commands"
    assert ["--data", "data/sample_qa.csv", "--baseline", "last", "--fail-if-worse"] in found


# ---- the checkers themselves ------------------------------------------------------------------


def test_slug_follows_github():
    assert slug("Did my change make it worse? (`--baseline`)") == (
        "did-my-change-make-it-worse---baseline"
    )
    assert slug("With LM Studio, as in the article") == "with-lm-studio-as-in-the-article"
    assert slug("One judge over several servers (a gateway route)") == (
        "one-judge-over-several-servers-a-gateway-route"
    )
    assert slug("4. ガイド(英語)") == "4-ガイド英語"
    assert slug("Can I trust my judge?") == "can-i-trust-my-judge"
    assert slug("snake_case and [a link](x.md)") == "snake_case-and-a-link"


def test_checkers_catch_what_they_are_for(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Part\n\n```bash\n# not a heading\n```\n\n"
        "[ok](#part) [bad anchor](#no-such) [bad file](missing.md) [web](https://x.org)\n"
        "`[not a link](nowhere.md)`\n\n"
        "```bash\npipenv run python mlflow_evaluate.py --data data/none.csv \\\n"
        "    --judge answer_similarity --no-such-flag 1  # a comment --also-not\n"
        "pipenv run python mlflow_evaluate.py --no-cache=yes\n```\n",
        encoding="utf-8",
    )
    assert anchors(page) == {"title", "part"}
    problems = broken_links(page)
    assert len(problems) == 2
    assert "#no-such" in problems[0] and "missing.md" in problems[1]
    first, second = commands(page)
    assert first[-2:] == ["--no-such-flag", "1"]
    assert rejected(first) == ["--no-such-flag: not an option of mlflow_evaluate.py"]
    assert "switch" in rejected(second)[0]
    assert rejected(["--data", "x.csv", "--judge", "faithfulness"]) == []
