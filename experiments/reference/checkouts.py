"""Fetched third-party checkouts and the shims that let them run here, in one place.

Every reference script runs the authors' code from a fetched copy (never vendored): a
work tree, or the bare git directory the fetch tool brings, which :func:`checkout`
extracts. Each ``import_*`` function below puts one checkout on ``sys.path`` and applies
the shims that repository needs on today's numpy / torch / PyYAML, and nothing else; its
docstring says what is patched and why. :func:`patched` sets attributes for the length of
a run and restores them, so a patch never leaks into the next run or the caller.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import types
from pathlib import Path

import numpy as np


def checkout(repo: Path, dest: Path, marker: str, paths: tuple[str, ...] = ()) -> Path:
    """A work tree of ``repo``: the directory itself if it has the file ``marker``, else the
    HEAD of a bare git directory (what the fetch tool brings) extracted into ``dest``;
    ``paths``: only these folders (a snapshot may lack its large data files)."""
    if (repo / marker).exists():
        return repo
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "--git-dir", str(repo), "archive", "HEAD", *paths], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def on_path(tree: Path) -> None:
    """Put ``tree`` first on ``sys.path``: the references import their own modules by
    top-level names (``runners``, ``train_model``, ``model``), and two of them share some
    (``data``, ``utils``), so modules of ``tree``'s top-level names already imported from
    elsewhere are forgotten and resolve into ``tree`` (runs of two references in one
    process, as in the tests)."""
    root = str(tree.resolve())
    sys.path[:] = [root] + [p for p in sys.path if p != root]
    tops = {p.stem for p in tree.iterdir() if p.suffix == ".py" or (p.is_dir() and not p.name.startswith("."))}
    for name in [n for n in sys.modules if n.split(".")[0] in tops]:
        if not (getattr(sys.modules[name], "__file__", None) or "").startswith(root):
            del sys.modules[name]


@contextlib.contextmanager
def patched(obj, **attrs):
    """``obj.name = value`` for each of ``attrs`` inside the block, the originals after it."""
    old = {k: getattr(obj, k) for k in attrs}
    try:
        for k, v in attrs.items():
            setattr(obj, k, v)
        yield
    finally:
        for k, v in old.items():
            setattr(obj, k, v)


# --- github.com/ilkhem/iVAE -------------------------------------------------------------

IVAE_MARKER = "runners/ivae.py"


def import_ivae(tree: Path):
    """The iVAE reference's ``runners.ivae.runner``.

    Patched: ``torch.optim.lr_scheduler.ReduceLROnPlateau`` accepts and ignores
    ``verbose=`` (its runner passes it; torch 2.x removed the argument)."""
    import torch

    base = torch.optim.lr_scheduler.ReduceLROnPlateau
    if not getattr(base, "_accepts_verbose", False):

        class ReduceLROnPlateau(base):
            _accepts_verbose = True

            def __init__(self, *a, verbose=None, **kw):
                super().__init__(*a, **kw)

        torch.optim.lr_scheduler.ReduceLROnPlateau = ReduceLROnPlateau
    on_path(tree)
    from runners.ivae import runner  # noqa: PLC0415  (the reference's own code)

    return runner


# --- github.com/brendel-group/objects-identifiability -----------------------------------

SLOT_MARKER = "train_model.py"
# imported by its synthetic-data path but never called there (logging, configs, image
# data, the sprite evaluator's optimiser); none is installable or needed here
SLOT_STUB_MODULES = (
    "wandb",
    "hydra",
    "hydra.utils",
    "omegaconf",
    "torchvision",
    "torchvision.transforms",
    "lion_pytorch",
    "eval.model_evaluation",
)


def stub_modules(names) -> None:
    """Empty stand-in packages for ``names`` (those already imported are left alone)."""
    for name in names:
        if name not in sys.modules:
            mod = types.ModuleType(name)
            mod.__path__ = []  # a package, so submodule stubs import
            sys.modules[name] = mod
    for name in names:  # ``import a.b`` then ``a.b`` needs the attribute on the parent
        parent, _, child = name.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, sys.modules[name])


def import_slot(tree: Path):
    """The slot reference's ``(train_model, utils)`` modules.

    Patched: :data:`SLOT_STUB_MODULES` are empty stand-ins (``eval.model_evaluation``'s
    ``evaluate_model`` is None: sprite data only); ``np.VisibleDeprecationWarning`` (its
    warning filter; numpy 2 moved the class to ``np.exceptions``) is aliased."""
    on_path(tree)  # first: it forgets the stub of ``eval.model_evaluation`` (in no file)
    stub_modules(SLOT_STUB_MODULES)
    if not hasattr(sys.modules["eval.model_evaluation"], "evaluate_model"):
        sys.modules["eval.model_evaluation"].evaluate_model = None
    if not hasattr(np, "VisibleDeprecationWarning"):
        np.VisibleDeprecationWarning = np.exceptions.VisibleDeprecationWarning
    import train_model  # noqa: PLC0415  (the reference's own code)
    import utils  # noqa: PLC0415

    return train_model, utils


@contextlib.contextmanager
def slot_training(train_model, utils, x: np.ndarray, z: np.ndarray, work: Path, own_eval: bool = True):
    """Inside the block, ``train_model.train_model(args)`` trains on the given arrays and
    keeps its trained model; yields a dict that receives ``"model"`` (and ``"own"``: its
    final evaluation's ``(recon, C_comp, SIS)`` if ``own_eval``).

    Patched for the block, restored after it: ``utils.gen_synth_data`` returns ``(x, z)``
    (``x [N, d_x]``, ``z [N, K, s]``: both implementations train on the same arrays);
    ``train_model.eval_model`` skips the evaluation at iteration 1 (27 s of SIS on a CPU,
    no information) and keeps the model at the final one; the working directory is
    ``work`` (it saves a state dict every 3,000 steps under ``./logs``)."""
    kept: dict = {"calls": 0}
    original_eval = train_model.eval_model
    nan3 = (float("nan"),) * 3

    def eval_model(args, model, loader):
        kept["calls"] += 1
        if kept["calls"] == 1:  # iteration 1
            return nan3
        kept["model"] = model
        if own_eval:
            kept["own"] = original_eval(args, model, loader)
            return kept["own"]
        return nan3

    work.mkdir(parents=True, exist_ok=True)
    with (
        patched(utils, gen_synth_data=lambda args: (x, z)),
        patched(train_model, eval_model=eval_model),
        contextlib.chdir(work),
    ):
        yield kept


# --- github.com/slachapelle/disentanglement_via_mechanism_sparsity ----------------------

MECHSPARSE_MARKER = "model/ilcm_vae.py"
MECHSPARSE_PATHS = ("model",)  # only its model code is used (the rest needs cooper, ignite)


def import_mechsparse(tree: Path) -> types.SimpleNamespace:
    """The mechanism-sparsity reference's ``ILCM_VAE``, ``FCGaussianLatentModel`` and ``MLP``.

    Patched: ``np.product`` (removed in numpy 2; their ELBO calls it) is ``np.prod``."""
    if not hasattr(np, "product"):
        np.product = np.prod
    on_path(tree)
    from model.ilcm_vae import ILCM_VAE  # noqa: PLC0415  (the reference's own code)
    from model.latent_models_vae import FCGaussianLatentModel  # noqa: PLC0415
    from model.nn import MLP  # noqa: PLC0415

    return types.SimpleNamespace(ILCM_VAE=ILCM_VAE, FCGaussianLatentModel=FCGaussianLatentModel, MLP=MLP)


# --- github.com/jozerozero/Synergy_Disentanglement (CG-GAN) -----------------------------

SYNERGY_MARKER = "realworld/training/flow.py"
SYNERGY_PATHS = ("realworld/training", "realworld/torch_utils", "realworld/dnnlib")
# dnnlib.util imports torchvision.utils (to save image grids) at import time; nothing here calls it
SYNERGY_STUB_MODULES = ("torchvision", "torchvision.utils")


def import_synergy(tree: Path) -> types.SimpleNamespace:
    """The CG-GAN reference's ``training.flow`` and ``training.networks`` modules
    (``tree``: a checkout with ``realworld/``).

    Patched: :data:`SYNERGY_STUB_MODULES` are empty stand-ins."""
    stub_modules(SYNERGY_STUB_MODULES)
    on_path(tree / "realworld")
    from training import flow, networks  # noqa: PLC0415  (the reference's own code)

    return types.SimpleNamespace(flow=flow, networks=networks)
