"""Khemakhem et al.'s iVAE beside ``cg.fit`` (needs torch and PyYAML, the bench extra, and a
fetched copy of their code, ``IVAE_REPO``; skipped without them)."""

import os
from pathlib import Path

import numpy as np
import pytest

IVAE_REPO = Path(os.environ.get("IVAE_REPO", "/work/.mirror/ilkhem+iVAE/repo"))


@pytest.mark.skipif(not IVAE_REPO.exists(), reason="needs a fetched copy of ilkhem/iVAE (set IVAE_REPO)")
def test_reference_trains_on_our_arrays(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("yaml")
    from cg import ivae_data
    from experiments.reference import checkouts, ivae

    tree = checkouts.checkout(IVAE_REPO, tmp_path / "ref", checkouts.IVAE_MARKER)
    checkouts.import_ivae(tree)
    # the shim: the ``verbose`` argument torch 2.x removed is accepted, and wrapping twice adds nothing
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    torch.optim.lr_scheduler.ReduceLROnPlateau(opt, verbose=True)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau
    checkouts.import_ivae(tree)
    assert torch.optim.lr_scheduler.ReduceLROnPlateau is sched

    data = ivae_data.generate(0, 4, 50, 2, act="xtanh")
    r = ivae.run_reference(tree, data, 0, "xtanh", 1, tmp_path / "data")
    assert r.get("failure") or 0 <= r["mcc"] <= 1
    assert np.isfinite(r["seconds"])
