"""The core imports no pipeline, and each core module has one import path."""

import importlib
import subprocess
import sys

import pytest

PIPELINE_MODULES = (
    "mechind.train",
    "mechind.data",
    "mechind.models",
    "mechind.losses",
    "mechind.criteria",
    "mechind.graph",
    "cg",
    "mechsparse",
)
CORE = ("derivatives", "runner", "training", "datasets", "metrics", "nets", "rng", "report")


def test_core_imports_no_pipeline():
    code = (
        "import sys\n"
        f"from mechind.core import {', '.join(CORE)}\n"
        f"print([m for m in {PIPELINE_MODULES!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", CORE)
def test_each_core_module_has_one_import_path(name):
    importlib.import_module(f"mechind.core.{name}")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"mechind.{name}")
