"""The "Adding ..." recipes (README's criterion, docs/extending.md's dataset and estimator) run
end to end exactly as printed (a recipe that drifts from the code fails here), and every
relative link in README and in the docs it links to points at a file that exists."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXTENDING = ROOT / "docs" / "extending.md"
RECIPES = {"Adding a criterion": README, "Adding a dataset": EXTENDING, "Adding an estimator": EXTENDING}
LINK = re.compile(r"\]\(([^)\s]+)\)")  # the target of a markdown link or image


def recipe(heading: str, path: Path = README) -> str:
    """The first ```python block under the ``## heading`` section of ``path``."""
    text = path.read_text()
    assert f"\n## {heading}\n" in text, f"no '## {heading}' in {path.name}"
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, f"no python block under '## {heading}' in {path.name}"
    return block.group(1)


@pytest.mark.parametrize("heading", list(RECIPES))
def test_recipe_runs_as_printed(heading, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # whatever a recipe writes stays in a temporary folder
    code = recipe(heading, RECIPES[heading])
    assert len(code.splitlines()) <= 30, f"the '{heading}' recipe is longer than 30 lines"
    namespace = {"__name__": "readme_recipe"}
    exec(compile(code, f"{RECIPES[heading].name}: {heading}", "exec"), namespace)  # noqa: S102 (our own docs' code)
    assert namespace.get("CHECK", True), f"the '{heading}' recipe's own check failed"


def relative_links(path: Path) -> list[str]:
    """Link targets of a markdown file that are paths in this repository (no URL, no bare anchor)."""
    targets = LINK.findall(path.read_text())
    return [t for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def linked_docs() -> list[Path]:
    """README and every markdown file under docs/ that README links to."""
    docs = {(ROOT / t.split("#", 1)[0]).resolve() for t in relative_links(README) if t.split("#", 1)[0].endswith(".md")}
    return [README, *sorted(p for p in docs if p.exists())]


@pytest.mark.parametrize("path", linked_docs(), ids=lambda p: p.name)
def test_relative_links_point_at_existing_files(path):
    missing = [t for t in relative_links(path) if not (path.parent / t.split("#", 1)[0]).exists()]
    assert not missing, f"{path.relative_to(ROOT)} links to missing files: {missing}"


def test_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README has {len(lines)} lines; move results and discussions to docs/"
    assert "docs/extending.md" in README.read_text()  # the other recipes are linked from README
