"""The PyTorch reference computes the same quantities as the JAX pipeline (needs torch)."""

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402

from experiments.bench import torch_reference  # noqa: E402
from mechind import losses  # noqa: E402


def test_reference_contrast_equals_ours():
    jac = np.random.default_rng(0).normal(size=(4, 7, 9)).astype(np.float32)
    ours = float(losses.compositional_contrast(jax.numpy.asarray(jac), (3, 3, 3)))
    ref = float(torch_reference.compositional_contrast(torch.as_tensor(jac), 3))
    assert ref == pytest.approx(ours, rel=1e-5)


def test_reference_jacobian_matches_jax_on_the_same_weights():
    dec, jac_fn, _ = torch_reference.jacobian_fn(5, 4, (8, 8))
    z = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    jt = jac_fn(torch.as_tensor(z)).numpy()
    ws = [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in dec if isinstance(m, torch.nn.Linear)]

    def f(v):
        for i, (w, b) in enumerate(ws):
            v = w @ v + b
            if i < len(ws) - 1:
                v = jax.numpy.where(v >= 0, v, 0.2 * v)
        return v

    np.testing.assert_allclose(jt, jax.vmap(jax.jacfwd(f))(z), rtol=1e-5, atol=1e-6)


def test_reference_trains():
    ref = torch_reference.Reference(obs_dim=10, num_slots=2, lam=1.0, num_steps=20)
    x = np.random.default_rng(0).normal(size=(200, 10)).astype(np.float32)
    out = ref.train(x, 20)
    assert np.isfinite(out["loss"]) and ref.encode(x).shape == (200, 6)


def test_slot_reference_decoder_copy_matches_torch():
    """The reference's MLP (``fc`` Linear layers, leaky ReLU 0.2), copied into jax for the
    shared diagnostics, computes the same function and Jacobian as in torch."""
    from experiments.bench import slot_reference

    class RefMLP(torch.nn.Module):  # the reference's models.addit_modules.MLP, by its layout
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.ModuleList([torch.nn.Linear(6, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 5)])

        def forward(self, h):
            for i, fc in enumerate(self.fc):
                h = fc(h)
                if i < len(self.fc) - 1:
                    h = torch.nn.functional.leaky_relu(h, 0.2)
            return h

    torch.manual_seed(0)
    dec = RefMLP()
    z = np.random.default_rng(2).normal(size=(4, 6)).astype(np.float32)
    f = slot_reference._torch_decoder_as_jax(dec)
    with torch.no_grad():
        np.testing.assert_allclose(jax.vmap(f)(z), dec(torch.as_tensor(z)).numpy(), rtol=1e-5, atol=1e-6)
    jt = torch.vmap(torch.func.jacfwd(dec))(torch.as_tensor(z)).detach().numpy()
    np.testing.assert_allclose(jax.vmap(jax.jacfwd(f))(z), jt, rtol=1e-5, atol=1e-6)


def test_slot_reference_summary_table():
    from experiments.bench import slot_reference

    base = {"data": "mechind", "contrast_share": 0.1, "c_comp": 1.0, "latent_scale": 2.0, "recon_r2": 0.99}
    rows = [{**base, "impl": "reference", "lam": 0.01, "sis": s} for s in (0.2, 0.6)]
    md = slot_reference.summary_table(rows)
    assert "| mechind | reference | 0.01 | 2 | 0.4 (0.2–0.6) |" in md


MECHSPARSE_REPO = Path(os.environ.get("MECHSPARSE_REPO",
                                      "/work/.mirror/slachapelle+disentanglement_via_mechanism_sparsity/repo"))


@pytest.mark.skipif(not MECHSPARSE_REPO.exists(), reason="needs a fetched copy of Lachapelle et al.'s code "
                                                         "(set MECHSPARSE_REPO)")
def test_mechsparse_reference_kl_equals_ours_and_it_trains(tmp_path):
    import sys

    from experiments.bench import ivae_reference, mechsparse_reference
    from mechsparse import data as ms_data
    from mechsparse import losses as ms_losses
    from mechsparse import train as ms_train

    tree = ivae_reference.checkout(MECHSPARSE_REPO, tmp_path / "ref", marker="model/ilcm_vae.py", paths=("model",))
    sys.path.insert(0, str(tree))
    from model.latent_models_vae import FCGaussianLatentModel

    lm = FCGaussianLatentModel(3, 3, 0, [], "MLP", n_lag=0, n_layers=1, hid_dim=4, freeze_m=True,
                               output_delta=False, var_p_mode="independent")
    g = np.random.default_rng(0)
    p_params, q_params = (torch.tensor(g.normal(size=(5, 3, 2)), dtype=torch.float32) for _ in range(2))
    theirs = lm.compute_kl(p_params, q_params.reshape(5, 6), None).detach().numpy()  # [5, 3]: KL(q || p) per latent
    mean_p, var_p = (t.detach().numpy() for t in lm.transform_p_params(p_params, None))
    mean_q, var_q = (t.detach().numpy() for t in lm.transform_q_params(q_params.reshape(5, 6)))
    ours = np.asarray(ms_losses.gaussian_kl(mean_q, var_q, mean_p, var_p))[..., 0]
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5)

    cfg = ms_train.Config(data=ms_data.Spec("action", "cyclic", latent_dim=3, obs_dim=6), num_train=256, num_val=64,
                          hidden=(8,), transition_hidden=(8,), batch_size=16, num_steps=20)
    r = mechsparse_reference.run_reference(tree, cfg, mechsparse_reference.our_data(cfg, 0), 0, "bound 1x true", 20)
    assert not r["failed"] and 0 <= r["mcc"] <= 1 and 0 <= r["shd"] <= 9
    # their initial weights map onto our parameter tree and our loop trains from them
    t = mechsparse_reference.run_ours_from_their_init(tree, cfg, 0, "none")
    assert 0 <= t["mcc"] <= 1 and t["edges"] == 9
