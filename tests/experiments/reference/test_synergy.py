"""The CG-GAN authors' flow prior and sparsity terms beside ours, on identical parameters
and inputs. Skipped without torch or the fetched repository (``SYNERGY_REPO``)."""

import os
from pathlib import Path

import numpy as np
import pytest

from experiments.reference import synergy

SYNERGY_REPO = Path(os.environ.get("SYNERGY_REPO", str(synergy.DEFAULT_REPO)))
pytestmark = pytest.mark.skipif(
    not SYNERGY_REPO.exists(), reason="needs a fetched copy of the CG-GAN authors' code (set SYNERGY_REPO)"
)


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    pytest.importorskip("torch")
    return synergy.load(SYNERGY_REPO, tmp_path_factory.mktemp("synergy"))


def test_their_dense_sigmoid_flow_equals_ours(ref):
    theirs, ours = synergy.ddsf_pair(ref)
    assert np.abs(theirs).max() > 0.1  # a non-trivial map
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("importance", [[1.0, 1.0, 1.0, 1.0], [0.9, 0.05, 0.5, 0.08]])
@pytest.mark.parametrize("flow_norm", [0, 1])
def test_their_prior_with_mask_and_normalisation_equals_ours(ref, importance, flow_norm):
    theirs, ours = synergy.prior_pair(ref, importance, flow_norm)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_their_sparsity_terms_equal_ours_and_the_released_proxy_carries_no_perturbation(ref):
    s = synergy.sparsity_pair(ref)
    assert s["lambda_sparse_theirs"] == pytest.approx(s["lambda_sparse_ours"], rel=1e-6)
    assert s["released"] == 0.0  # as released, the perturbed output is the unperturbed one
    assert s["fixed_theirs"] > 0 and s["fixed_ours"] == pytest.approx(s["fixed_theirs"], rel=1e-5)
