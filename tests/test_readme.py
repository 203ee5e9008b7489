"""README's "Adding ..." recipes run end to end, exactly as printed (a recipe that drifts
from the code fails here)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def recipe(heading: str) -> str:
    """The first ```python block under the ``## heading`` section of README."""
    text = README.read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, f"no python block under '## {heading}'"
    return block.group(1)


@pytest.mark.parametrize("heading", ["Adding a criterion", "Adding a dataset", "Adding an estimator"])
def test_recipe_runs_as_printed(heading, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # whatever a recipe writes stays in a temporary folder
    code = recipe(heading)
    assert len(code.splitlines()) <= 30, f"the '{heading}' recipe is longer than 30 lines"
    namespace = {"__name__": "readme_recipe"}
    exec(compile(code, f"README: {heading}", "exec"), namespace)  # noqa: S102 (README's own code)
    assert namespace.get("CHECK", True), f"the '{heading}' recipe's own check failed"
