"""The docs cannot drift from the code: the generated reference pages (docs/cli.md,
docs/configuration.md) are what the code generates now, every environment variable the product
code names is documented, and every relative link of README.md, CONTRIBUTING.md and docs/
points at a file (and heading) that exists."""

from __future__ import annotations

import re
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
