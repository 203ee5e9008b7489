"""Brady et al.'s slot autoencoder beside ours: its trained weights scored by our evaluation.

Tests that need torch or the fetched repository (``SLOT_REPO``) are skipped without them."""

import os
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments.reference import checkouts, slot
from mechind import train

SLOT_REPO = Path(os.environ.get("SLOT_REPO", "/work/.mirror/brendel-group+objects-identifiability/repo"))


def _ref_mlp(torch, sizes):
    """The reference's ``models.addit_modules.MLP``, by its layout: ``fc`` Linear layers,
    leaky ReLU 0.2 between them, linear output."""

    class RefMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.ModuleList([torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])

        def forward(self, h):
            for i, fc in enumerate(self.fc):
                h = fc(h)
                if i < len(self.fc) - 1:
                    h = torch.nn.functional.leaky_relu(h, 0.2)
            return h

    return RefMLP()


def test_torch_mlp_params_give_our_mlp_the_same_function_and_jacobian():
    torch = pytest.importorskip("torch")
    from mechind import models

    torch.manual_seed(0)
    dec = _ref_mlp(torch, (6, 8, 8, 5))
    ours = models.MLP((8, 8, 5))
    params = slot.torch_mlp_params(dec)
    f = lambda v: ours.apply({"params": params}, v)  # noqa: E731
    z = np.random.default_rng(2).normal(size=(4, 6)).astype(np.float32)
    assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, ours.init(jax.random.PRNGKey(0), z[0])["params"])
    with torch.no_grad():
        np.testing.assert_allclose(f(z), dec(torch.as_tensor(z)).numpy(), rtol=1e-5, atol=1e-6)
    jt = torch.vmap(torch.func.jacfwd(dec))(torch.as_tensor(z)).detach().numpy()
    np.testing.assert_allclose(jax.vmap(jax.jacfwd(f))(z), jt, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # eager, uncompiled evaluation: about a minute on 2 cores
def test_diagnostics_are_the_projects_evaluation():
    """``slot.diagnostics`` is ``train.finish(train.evaluate(...))``: same keys, same numbers."""
    cfg = train.SlotConfig(num_slots=2, num_train=64, num_val=40, hidden=(8,), contrast_eval_samples=16)
    key = jax.random.PRNGKey(0)
    nets = train.make_nets(cfg)
    data = train.make_data(cfg, key)
    hp = train.HParams(np.float32(0.5), np.float32(cfg.lr))
    state = train.init_state(cfg, nets, key, data, hp)
    out = slot.diagnostics(cfg, state.params, data, 0.5)
    want = train.finish(jax.device_get(train.evaluate(cfg, nets, state, data, hp)))
    assert out.keys() == want.keys() and set(slot.COLUMNS) <= out.keys()
    for k in want:
        np.testing.assert_allclose(out[k], want[k], rtol=1e-6)


def test_summary_table():
    base = {"data": "mechind", "contrast_share": 0.1, "c_comp": 1.0, "latent_scale": 2.0, "recon_r2": 0.99}
    rows = [{**base, "impl": "reference", "lam": 0.01, "sis": s} for s in (0.2, 0.6)]
    md = slot.summary_table(rows)
    assert "| mechind | reference | 0.01 | 2 | 0.4 (0.2–0.6) |" in md


@pytest.mark.skipif(not SLOT_REPO.exists(), reason="needs a fetched copy of Brady et al.'s code (set SLOT_REPO)")
def test_reference_trains_on_our_arrays_and_leaves_no_patch(tmp_path):
    pytest.importorskip("torch")
    tree = checkouts.checkout(SLOT_REPO, tmp_path / "ref", checkouts.SLOT_MARKER)
    tm, utils = checkouts.import_slot(tree)
    originals = (tm.eval_model, utils.gen_synth_data, Path.cwd())
    x, z = slot.mechind_data(0, nobs=400)
    r = slot.run_reference(tree, x, z, 0, 1.0, 4, 4e-4, tmp_path / "work", own_eval=False)
    assert (tm.eval_model, utils.gen_synth_data, Path.cwd()) == originals
    assert 0 <= r["sis"] <= 1 and np.isfinite(r["c_comp"]) and r["seconds"] > 0
    assert (tmp_path / "work" / "logs").exists()  # it ran in the work folder
