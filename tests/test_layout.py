"""The tests mirror the source: every module ``<pkg>/.../<name>.py`` has its test module
``tests/<pkg>/.../test_<name>.py`` (issue 21)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mechind", "cg", "mechsparse", "experiments")
NOT_MODULES = {"__init__.py", "__main__.py"}


def mirror(module: Path) -> Path:
    """``mechind/core/nets.py`` -> ``tests/mechind/core/test_nets.py`` (paths relative to the root)."""
    return Path("tests") / module.parent / f"test_{module.name}"


def source_modules() -> list[Path]:
    return sorted(
        p.relative_to(ROOT) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if p.name not in NOT_MODULES
    )


def test_mirror_path():
    assert mirror(Path("mechind/core/nets.py")) == Path("tests/mechind/core/test_nets.py")
    assert mirror(Path("cg/data.py")) == Path("tests/cg/test_data.py")


def test_every_source_module_has_its_test_module():
    modules = source_modules()
    assert Path("mechind/core/rng.py") in modules and Path("experiments/bench/common.py") in modules
    missing = [f"{m} -> {mirror(m)}" for m in modules if not (ROOT / mirror(m)).is_file()]
    assert not missing, "source modules without their mirrored test module:\n" + "\n".join(missing)
