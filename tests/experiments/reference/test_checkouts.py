"""The shared helpers for fetched checkouts: extraction, ``sys.path``, stubs, scoped patches."""

import os
import subprocess
import sys
import types

import pytest

from experiments.reference import checkouts


def test_checkout_returns_a_work_tree_as_it_is(tmp_path):
    (tmp_path / "train_model.py").write_text("")
    assert checkouts.checkout(tmp_path, tmp_path / "unused", checkouts.SLOT_MARKER) == tmp_path
    assert not (tmp_path / "unused").exists()


@pytest.mark.skipif(subprocess.run(["git", "--version"], capture_output=True).returncode != 0, reason="needs git")
def test_checkout_extracts_head_of_a_bare_git_directory(tmp_path):
    src = tmp_path / "src"
    (src / "model").mkdir(parents=True)
    (src / "model" / "ilcm_vae.py").write_text("X = 1\n")
    (src / "big.bin").write_text("large data")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(src), *cmd], check=True, env=env)
    tree = checkouts.checkout(src / ".git", tmp_path / "out", checkouts.MECHSPARSE_MARKER, checkouts.MECHSPARSE_PATHS)
    assert (tree / "model" / "ilcm_vae.py").read_text() == "X = 1\n"
    assert not (tree / "big.bin").exists()  # only the folders asked for


def test_patched_restores_the_attributes_even_on_error():
    obj = types.SimpleNamespace(a=1, b=2)
    with pytest.raises(RuntimeError), checkouts.patched(obj, a=10, b=20):
        assert (obj.a, obj.b) == (10, 20)
        raise RuntimeError
    assert (obj.a, obj.b) == (1, 2)


def test_stub_modules_import_as_packages_and_leave_real_modules_alone(monkeypatch):
    for name in ("_stub_pkg", "_stub_pkg.sub"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    checkouts.stub_modules(("_stub_pkg", "_stub_pkg.sub", "json"))
    import _stub_pkg.sub  # noqa: F401

    assert sys.modules["_stub_pkg"].sub is sys.modules["_stub_pkg.sub"]
    assert hasattr(sys.modules["json"], "dumps")  # already imported: not replaced


def test_on_path_puts_the_tree_first_and_forgets_its_names_imported_from_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("_ref_shared", "_ref_shared.sub"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))  # another checkout's
    monkeypatch.setitem(sys.modules, "_ref_unrelated", types.ModuleType("_ref_unrelated"))
    (tmp_path / "_ref_shared.py").write_text("WHERE = 'tree'\n")
    checkouts.on_path(tmp_path)
    checkouts.on_path(tmp_path)
    root = str(tmp_path.resolve())
    assert sys.path[0] == root and sys.path.count(root) == 1
    assert "_ref_shared" not in sys.modules and "_ref_shared.sub" not in sys.modules
    assert "_ref_unrelated" in sys.modules
    import _ref_shared

    assert _ref_shared.WHERE == "tree"
    monkeypatch.delitem(sys.modules, "_ref_shared")
