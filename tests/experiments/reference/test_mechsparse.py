"""Lachapelle et al.'s model beside ``mechsparse`` (needs torch and a fetched copy of their
code, ``MECHSPARSE_REPO``; skipped without them)."""

import os
from pathlib import Path

import numpy as np
import pytest

MECHSPARSE_REPO = Path(
    os.environ.get("MECHSPARSE_REPO", "/work/.mirror/slachapelle+disentanglement_via_mechanism_sparsity/repo")
)


@pytest.mark.skipif(
    not MECHSPARSE_REPO.exists(), reason="needs a fetched copy of Lachapelle et al.'s code (set MECHSPARSE_REPO)"
)
def test_reference_kl_equals_ours_and_it_trains(tmp_path):
    torch = pytest.importorskip("torch")
    from experiments.reference import checkouts, mechsparse
    from mechind.core import training
    from mechsparse import data as ms_data
    from mechsparse import train as ms_train

    tree = checkouts.checkout(
        MECHSPARSE_REPO, tmp_path / "ref", checkouts.MECHSPARSE_MARKER, checkouts.MECHSPARSE_PATHS
    )
    ref = checkouts.import_mechsparse(tree)
    lm = ref.FCGaussianLatentModel(
        3, 3, 0, [], "MLP", n_lag=0, n_layers=1, hid_dim=4, freeze_m=True, output_delta=False, var_p_mode="independent"
    )
    g = np.random.default_rng(0)
    p_params, q_params = (torch.tensor(g.normal(size=(5, 3, 2)), dtype=torch.float32) for _ in range(2))
    theirs = lm.compute_kl(p_params, q_params.reshape(5, 6), None).detach().numpy()  # [5, 3]: KL(q || p) per latent
    mean_p, var_p = (t.detach().numpy() for t in lm.transform_p_params(p_params, None))
    mean_q, var_q = (t.detach().numpy() for t in lm.transform_q_params(q_params.reshape(5, 6)))
    ours = np.asarray(training.gaussian_kl(mean_q, var_q, mean_p, var_p))[..., 0]
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5)

    cfg = ms_train.Config(
        data=ms_data.Spec("action", "cyclic", latent_dim=3, obs_dim=6),
        num_train=256,
        num_val=64,
        hidden=(8,),
        transition_hidden=(8,),
        batch_size=16,
        num_steps=20,
    )
    r = mechsparse.run_reference(tree, cfg, mechsparse.our_data(cfg, 0), 0, "bound 1x true", 20)
    assert not r["failed"] and 0 <= r["mcc"] <= 1 and 0 <= r["shd"] <= 9
    # their initial weights map onto our parameter tree and our loop trains from them
    t = mechsparse.run_ours_from_their_init(tree, cfg, 0, "none")
    assert 0 <= t["mcc"] <= 1 and t["edges"] == 9
