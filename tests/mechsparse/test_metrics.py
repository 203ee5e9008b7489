"""SHD under the MCC matching on known graphs, and the affine R²."""

import jax.numpy as jnp
import numpy as np
import pytest

from mechsparse import metrics

TRUTH = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]], bool)  # a chain with self-loops


def test_shd_is_zero_for_the_truth_under_any_relabelling():
    rng = np.random.default_rng(0)
    for _ in range(5):
        perm = rng.permutation(3)  # learned latent perm[i] is true latent i
        inv = np.argsort(perm)
        learned_z = TRUTH[np.ix_(inv, inv)]  # the truth in the learned latents' order
        assert metrics.shd(TRUTH, learned_z, perm, "time") == 0
        learned_a = TRUTH[inv]  # actions keep their order
        assert metrics.shd(TRUTH, learned_a, perm, "action") == 0


def test_shd_counts_missing_and_extra_edges():
    perm = np.array([2, 0, 1])
    inv = np.argsort(perm)
    learned = TRUTH[np.ix_(inv, inv)].copy()
    learned[perm[0], perm[2]] = True  # an extra edge 0 <- 2 (true labels; learned perm[i] is true i)
    learned[perm[1], perm[0]] = False  # a missing edge 1 <- 0
    assert metrics.shd(TRUTH, learned, perm, "time") == 2
    assert metrics.shd(TRUTH, np.ones((3, 3), bool), np.arange(3), "time") == 4
    assert metrics.shd(TRUTH, np.zeros((3, 3), bool), np.arange(3), "action") == 5


def test_shd_rejects_bad_input():
    with pytest.raises(ValueError, match="kind"):
        metrics.shd(TRUTH, TRUTH, np.arange(3), "space")
    with pytest.raises(ValueError, match="shape"):
        metrics.shd(TRUTH, np.ones((3, 4), bool), np.arange(3), "time")


def test_linear_r2_affine_and_independent():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 3))
    a = rng.normal(size=(3, 3))
    assert float(metrics.linear_r2(jnp.asarray(z), jnp.asarray(z @ a + 5.0))) == pytest.approx(1.0, abs=1e-4)
    assert float(metrics.linear_r2(jnp.asarray(z), jnp.asarray(rng.normal(size=(2000, 3))))) < 0.01
