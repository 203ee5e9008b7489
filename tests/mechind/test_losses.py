import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mechind import losses
from mechind.core import derivatives
from tests.conftest import random_mlp


def _contrast_loop(jac, sizes):
    """Direct loop over samples, rows and slot pairs."""
    jac = np.asarray(jac, float)
    edges = np.cumsum((0,) + tuple(sizes))
    total = 0.0
    for b in range(jac.shape[0]):
        for n in range(jac.shape[1]):
            norms = [np.linalg.norm(jac[b, n, edges[k] : edges[k + 1]]) for k in range(len(sizes))]
            total += sum(norms[i] * norms[j] for i, j in itertools.combinations(range(len(sizes)), 2))
    return total / jac.shape[0]


@pytest.mark.parametrize("sizes", [(3, 3), (2, 3, 1), (3, 3, 3, 3, 3), (5,)])
def test_contrast_matches_loop(sizes):
    jac = jax.random.normal(jax.random.PRNGKey(len(sizes)), (4, 7, sum(sizes)))
    np.testing.assert_allclose(losses.compositional_contrast(jac, sizes), _contrast_loop(jac, sizes), rtol=1e-5)


def test_contrast_zero_iff_rows_see_one_slot():
    jac = jnp.zeros((2, 4, 4)).at[:, :2, :2].set(1.0).at[:, 2:, 2:].set(2.0)
    assert float(losses.compositional_contrast(jac, (2, 2))) == 0.0
    assert float(losses.compositional_contrast(jac.at[:, 0, 3].set(1.0), (2, 2))) > 0


def test_decoder_contrast_and_its_gradient_against_finite_differences(x64):
    dec, params = random_mlp(jax.random.PRNGKey(0), (6, 10, 8))
    z = jax.random.normal(jax.random.PRNGKey(1), (5, 6))
    sizes = (3, 3)

    def cc_exact(params, z):
        return losses.decoder_contrast(lambda v: dec(v, params), z, sizes)

    def cc_fd(params, z):
        jac = derivatives.finite_difference_jacobian(lambda v: dec(v, params), z, eps=1e-6, scheme="central")
        return losses.compositional_contrast(jac, sizes)

    jac_fwd = jax.vmap(jax.jacfwd(lambda v: dec(v, params)))(z)
    np.testing.assert_allclose(cc_exact(params, z), _contrast_loop(jac_fwd, sizes), rtol=1e-10)
    np.testing.assert_allclose(cc_exact(params, z), cc_fd(params, z), rtol=1e-7)
    # the gradient w.r.t. the latents (which flows into the encoder) and the decoder params
    gz = jax.grad(cc_exact, argnums=1)(params, z)
    h = 1e-6
    dz = jax.random.normal(jax.random.PRNGKey(2), z.shape)
    fd = (cc_exact(params, z + h * dz) - cc_exact(params, z - h * dz)) / (2 * h)
    np.testing.assert_allclose(jnp.sum(gz * dz), fd, rtol=1e-5)
    gp = jax.grad(cc_exact)(params, z)
    dp = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(3), p.shape), params)
    fdp = (
        cc_exact(jax.tree.map(lambda p, d: p + h * d, params, dp), z)
        - cc_exact(jax.tree.map(lambda p, d: p - h * d, params, dp), z)
    ) / (2 * h)
    np.testing.assert_allclose(
        sum(jnp.sum(a * b) for a, b in zip(jax.tree.leaves(gp), jax.tree.leaves(dp))), fdp, rtol=1e-5
    )


def test_contrast_jit_equals_eager():
    jac = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 6))
    np.testing.assert_allclose(
        jax.jit(losses.compositional_contrast, static_argnums=1)(jac, (3, 3)),
        losses.compositional_contrast(jac, (3, 3)),
        rtol=1e-6,
    )


def test_bad_input():
    with pytest.raises(ValueError, match="jac must have shape"):
        losses.compositional_contrast(jnp.ones((3, 3)), (1, 2))
    with pytest.raises(ValueError, match="sum to 4"):
        losses.compositional_contrast(jnp.ones((1, 3, 5)), (2, 2))


def _hand_decoder(z):
    """x = (z0 + z3, z1 * z2, 2 z3, z0 - z4 + z5): rows 0 and 3 mix the two slots."""
    return jnp.stack([z[0] + z[3], z[1] * z[2], 2.0 * z[3], z[0] - z[4] + z[5]])


def _standardized_stats(decode, z):
    x = jax.vmap(decode)(z)
    jac = derivatives.jacobian(decode, z, mode="fwd")
    return jac, jnp.std(z, 0), jnp.std(x, 0)


def test_scale_invariant_contrast_ignores_rescaled_latents_raw_one_does_not():
    sizes = (3, 3)
    z = jax.random.normal(jax.random.PRNGKey(0), (256, 6))
    c = jnp.array([30.0, 0.5, 2.0, 100.0, 7.0, 0.1])  # a different scale for every latent
    # the same decoder read in rescaled latents w = c z:  g~(w) = g(w / c)
    scaled = lambda w: _hand_decoder(w / c)  # noqa: E731
    jac, zs, xs = _standardized_stats(_hand_decoder, z)
    jac_c, zs_c, xs_c = _standardized_stats(scaled, z * c)
    raw, raw_c = losses.compositional_contrast(jac, sizes), losses.compositional_contrast(jac_c, sizes)
    assert float(raw_c) < 0.2 * float(raw)  # the loophole: inflate the latents, pay less
    std = losses.compositional_contrast(losses.standardize_jacobian(jac, zs, xs), sizes)
    std_c = losses.compositional_contrast(losses.standardize_jacobian(jac_c, zs_c, xs_c), sizes)
    np.testing.assert_allclose(std_c, std, rtol=1e-4)
    share = losses.contrast_share(losses.standardize_jacobian(jac, zs, xs), sizes)
    share_c = losses.contrast_share(losses.standardize_jacobian(jac_c, zs_c, xs_c), sizes)
    np.testing.assert_allclose(share_c, share, rtol=1e-4)
    # and rescaling an observed coordinate changes nothing either
    obs = jnp.array([1.0, 50.0, 0.01, 3.0])
    jac_o, zs_o, xs_o = _standardized_stats(lambda w: obs * _hand_decoder(w), z)
    np.testing.assert_allclose(
        losses.contrast_share(losses.standardize_jacobian(jac_o, zs_o, xs_o), sizes), share, rtol=1e-4
    )


def test_contrast_share_known_values():
    # block-diagonal Jacobian: no row sees two slots -> 0
    jac = jnp.zeros((2, 4, 6)).at[:, :2, :3].set(1.0).at[:, 2:, 3:].set(2.0)
    assert float(losses.contrast_share(jac, (3, 3))) == 0.0
    # every row sees both slots equally -> the maximum (K - 1) / (2K) = 1/4
    np.testing.assert_allclose(losses.contrast_share(jnp.ones((2, 4, 6)), (3, 3)), 0.25, rtol=1e-6)
    # K = 3, equal blocks -> 1/3; one row of norms (1, 2, 0): pairs 2 / total 9
    np.testing.assert_allclose(losses.contrast_share(jnp.ones((1, 5, 6)), (2, 2, 2)), 1 / 3, rtol=1e-6)
    row = jnp.array([[[1.0, 0.0, 2.0, 0.0, 0.0, 0.0]]])
    np.testing.assert_allclose(losses.contrast_share(row, (2, 2, 2)), 2 / 9, rtol=1e-6)
