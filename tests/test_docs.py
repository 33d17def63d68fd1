"""The docs cannot drift from the code: the generated reference pages (docs/cli.md,
docs/configuration.md) are what the code generates now, every environment variable the product
code names is documented, and every relative link of README.md, CONTRIBUTING.md and docs/
points at a file (and heading) that exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from adp.app.reference import DOCS, PAGES

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ["adp", "app", "client", "core", "connectors", "runtimes", "schemas", "streams"]
ENV_NAME = re.compile(r"\b(?:ADP|GEMINI|DEEPSEEK|OPENAI|AWS)_[A-Z][A-Z0-9_]*[A-Z0-9]\b")


@pytest.mark.parametrize("page", sorted(PAGES))
def test_generated_pages_are_current(page):
    assert (DOCS / page).read_text() == PAGES[page](), (
        f"docs/{page} is stale: run `python -m adp.app.reference`"
    )


def test_every_environment_variable_the_code_names_is_documented():
    documented = (DOCS / "configuration.md").read_text()
    named: dict[str, str] = {}
    for top in PRODUCT:
        for file in (ROOT / top).rglob("*.py"):
            for name in ENV_NAME.findall(file.read_text()):
                named.setdefault(name, str(file.relative_to(ROOT)))
    missing = {n: f for n, f in named.items() if f"`{n}`" not in documented}
    assert not missing, f"named in the code, missing from docs/configuration.md: {missing}"
    assert len(named) > 20  # the scan sees the code


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    out = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_relative_links_resolve():
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text()):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


# ---- the commands the docs show are commands the code has -------------------------------------

SHELL_BLOCK = re.compile(r"```(?:bash|sh|shell|console)\n(.*?)```", re.S)
INLINE_COMMAND = re.compile(r"(?<!`)`(adp [^`\n]+)`")
SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")"}
PREFIXES = {"do", "then", "else", "sudo", "nohup", "time", "exec"}


def _segments(line: str) -> list[list[str]]:
    """The simple commands of one shell line, as tokens (quotes honoured, comments dropped)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    out: list[list[str]] = [[]]
    for token in lexer:
        if token in SEPARATORS:
            out.append([])
        else:
            out[-1].append(token)
    return [s for s in out if s]


def _adp_invocation(tokens: list[str]) -> list[str] | None:
    """The arguments of an `adp` command (its environment assignments and `sudo` and the like
    dropped), or None when the command is something else."""
    while tokens and (tokens[0] in PREFIXES or re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", tokens[0])):
        tokens = tokens[1:]
    if not tokens or tokens[0].rsplit("/", 1)[-1] != "adp":
        return None
    args = []
    for token in tokens[1:]:
        if set(token) <= set("<>&") or token == "--":  # a redirection or the end of options
            break
        args.append(token.strip("[]"))
    return args


def _commands_shown(text: str) -> list[list[str]]:
    found = []
    for block in SHELL_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            try:
                segments = _segments(line)
            except ValueError:  # an unbalanced quote: a heredoc's data, not a command
                assert not line.lstrip().startswith("adp "), line
                continue
            found += [a for a in map(_adp_invocation, segments) if a is not None]
    for inline in INLINE_COMMAND.findall(text):
        found += [a for a in map(_adp_invocation, _segments(inline)) if a is not None]
    return found


def _check_invocation(args: list[str]) -> str | None:
    """What is wrong with `adp ARGS` as the docs show it: no such command or flag."""
    import click

    from adp.app.cli import main

    command: click.Command = main
    ctx = click.Context(main)
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            return f"no command `{rest[0]}`"
        command, rest = sub, rest[1:]
    flags = {o for p in command.params for o in [*p.opts, *p.secondary_opts]} | {"--help"}
    for token in rest:
        name = token.split("=", 1)[0]
        is_flag = name.startswith("-") and name != "-" and not re.fullmatch(r"-\d.*", name)
        if is_flag and name not in flags:
            return f"no flag `{name}`"
    return None


def test_every_command_the_docs_show_exists_with_its_flags():
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted(DOCS.glob("*.md"))]
    wrong = []
    for page in pages:
        for args in _commands_shown(page.read_text()):
            problem = _check_invocation(args)
            if problem:
                wrong.append(f"{page.relative_to(ROOT)}: adp {' '.join(args)}: {problem}")
    assert not wrong, "\n".join(wrong)
    shown = sum(len(_commands_shown(p.read_text())) for p in pages)
    assert shown > 100  # the scan sees the commands


def test_the_command_scan_catches_a_wrong_flag_and_a_wrong_command():
    text = (
        "```bash\nADP_X=1 adp aggregate --out s3://b/x --sinks s3 &\n```\nthen `adp replai --out x`"
    )
    problems = [_check_invocation(a) for a in _commands_shown(text)]
    assert problems == ["no flag `--sinks`", "no command `replai`"]


def test_the_sample_tasks_name_tools_their_runtime_offers():
    import json

    from adp.runtimes.tools.python import python_tool
    from adp.runtimes.web import browser_tools

    browser = {t.name for t in browser_tools(None)} | {"finish"}
    offered = {
        "code": {python_tool(None, None).name},
        "web": browser,
        "reasoning": browser | {python_tool(None, None).name},
    }
    files = [ROOT / "tasks.jsonl", ROOT / "app" / "site" / "tasks.sample.jsonl"]
    files += sorted((ROOT / "examples").rglob("*.jsonl"))
    wrong = []
    for file in files:
        for line in file.read_text().splitlines():
            task = json.loads(line)
            unknown = set(task.get("expected_tools", [])) - offered[task["task_type"]]
            if unknown:
                wrong.append(f"{file.relative_to(ROOT)}: {task['task_id']}: {sorted(unknown)}")
    assert not wrong, "\n".join(wrong)


def test_the_readme_rl_loop_is_the_example_that_runs():
    """README's GRPO loop is examples/grpo_loop.py (which tests/test_rl_groups.py runs against
    the real broker), so the README never shows a loop that no longer works."""
    readme = (ROOT / "README.md").read_text()
    shown = readme.split("## Training with RL", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    lines = [line for line in shown.splitlines() if line.strip()]
    example = iter((ROOT / "examples" / "grpo_loop.py").read_text().splitlines())
    assert len(lines) > 10 and all(line in example for line in lines)  # in the example's order
