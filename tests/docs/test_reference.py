"""The site's sources: every module has an API page entry, and the navigation names real pages."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PACKAGES = ("aif", "generative_models", "environments", "baselines", "experiments")


def directives(package: str) -> list[str]:
    """The objects that ``::: name`` lines render on a package's reference page."""
    page = DOCS / "reference" / f"{package}.md"
    return re.findall(r"^::: (\S+)\s*$", page.read_text(encoding="utf-8"), flags=re.MULTILINE)


def public_modules(package: str) -> list[str]:
    path = importlib.import_module(package).__path__
    return sorted(
        f"{package}.{info.name}"
        for info in pkgutil.iter_modules(path)
        if not info.name.startswith("_")
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_module_has_a_reference_entry(package: str) -> None:
    listed = directives(package)
    missing = sorted(set(public_modules(package)) - set(listed))
    assert not missing, f"docs/reference/{package}.md lacks '::: name' lines for {missing}"
    assert listed[0] == package, "the page should open with the package itself"
    for name in listed:
        importlib.import_module(name)  # a directive naming a module that is gone


def nav_pages(config: str) -> list[str]:
    """The Markdown files that mkdocs.yml's nav names (one per line, as this repository writes it)."""
    nav = config.split("\nnav:\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\s+- (?:[^:\n]+: )?(\S+\.md)\s*$", nav, flags=re.MULTILINE)


def test_nav_names_every_page_and_only_existing_pages() -> None:
    config = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    listed = nav_pages(config)
    assert "index.md" in listed and "reference/aif.md" in listed
    on_disk = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(listed) == on_disk
