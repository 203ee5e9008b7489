"""CG-GAN's networks and losses against independent computations: finite differences,
closed forms and hand-built cases. (The side by side with the authors' code is in
tests/experiments/reference/test_synergy.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cg import gan

A = gan.Arch(latent_dim=4, i_dim=3, max_domains=3, height=8, width=8, w_dim=8, map_hidden=16, synth_hidden=16)
CG = gan.Variant(*(jnp.float32(x) for x in (1, 1, 1, 0)))  # prior, flow, mask, no concat


def params(key=0, importance=(1.0, 1.0, 1.0)):
    p = gan.init_generator(jax.random.PRNGKey(key), A)
    p["importance"] = jnp.asarray(importance, jnp.float32)
    # bend the flow (its own weights start at +-1e-3) so that domains differ visibly
    p["flow"] = [jax.tree.map(lambda w: 3 * jax.random.normal(jax.random.PRNGKey(9), w.shape), b) for b in p["flow"]]
    p["cond"][-1]["w"] = 30 * p["cond"][-1]["w"]
    return p


def test_ddsf_num_params_and_monotone_in_its_input():
    assert gan.ddsf_num_params(1, 10) == 31 and gan.ddsf_num_params(2, 10) == 31 + 40
    blocks = [
        jax.tree.map(lambda w: jax.random.normal(jax.random.PRNGKey(1), w.shape), b)
        for b in gan.init_ddsf(jax.random.PRNGKey(0), 3, 5)
    ]
    dsp = jax.random.normal(jax.random.PRNGKey(2), (2, gan.ddsf_num_params(3, 5)))
    x = jnp.linspace(-4, 4, 200)
    y = jax.jit(jax.vmap(lambda t: gan.ddsf(jnp.array([t, -t]), dsp, blocks)))(x)
    assert np.all(np.diff(np.asarray(y[:, 0])) > 0) and np.all(np.diff(np.asarray(y[:, 1])) < 0)


def test_mask_threshold_makes_a_latent_domain_invariant_and_stops_its_gradient():
    p = params(importance=(0.5, 0.09, 0.11))
    eps = jax.random.normal(jax.random.PRNGKey(3), (4,))
    prior = jax.jit(lambda q, u: gan.prior(q, A, eps, u, CG))
    z = [np.asarray(prior(p, jnp.int32(u))) for u in range(3)]
    # latent 1 (importance 0.09 < 0.1) and latent 3 (outside i_dim) are the noise itself in every domain
    for zu in z:
        np.testing.assert_allclose(zu[[1, 3]], np.asarray(eps)[[1, 3]], rtol=1e-6)
    assert abs(z[0][0] - z[1][0]) > 1e-3 and abs(z[0][2] - z[1][2]) > 1e-4  # kept latents change with u
    g = jax.jit(jax.grad(lambda imp: jnp.sum(gan.gate({**p, "importance": imp}, CG))))(p["importance"])
    np.testing.assert_array_equal(np.asarray(g), [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(np.asarray(gan.kept(p, CG)), [1.0, 0.0, 1.0])
    no_mask = CG._replace(mask=jnp.float32(0))
    np.testing.assert_array_equal(np.asarray(gan.gate(p, no_mask)), [1.0, 1.0, 1.0])


def test_group_normalize_is_the_per_group_root_mean_square():
    z = jnp.array([3.0, -4.0, 1.0, 2.0, 2.0])
    style = jnp.array([1.0, 1.0, 0.0, 0.0, 0.0])
    out = np.asarray(gan.group_normalize(z, style))
    np.testing.assert_allclose(out[:2], np.array([3.0, -4.0]) / np.sqrt(12.5), rtol=1e-6)
    np.testing.assert_allclose(out[2:], np.array([1.0, 2.0, 2.0]) / np.sqrt(3.0), rtol=1e-6)


def test_exact_sparsity_equals_central_differences(x64):
    p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params())
    z = jax.random.normal(jax.random.PRNGKey(4), (3, 4), jnp.float64)
    u = jnp.array([0, 1, 2])
    weights = jnp.array([1.0, 0.0, 1.0])
    scale = jnp.array([0.5, 2.0, 1.5])
    exact = float(jax.jit(gan.exact_sparsity, static_argnums=1)(p, A, z, u, CG, weights, scale))
    render = jax.jit(jax.vmap(lambda zz, d: gan.render(p, A, zz, d, CG)))
    h = 1e-5
    fd = [
        np.mean(np.abs((render(z.at[:, i].add(h), u) - render(z.at[:, i].add(-h), u)) / (2 * h))) * scale[i]
        for i in (0, 2)
    ]
    np.testing.assert_allclose(exact, np.mean(fd), rtol=1e-6)


def test_the_proxy_tends_to_the_exact_term_and_is_scale_free(x64):
    p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params())
    z = jax.random.normal(jax.random.PRNGKey(5), (4, 4), jnp.float64)
    u = jnp.array([0, 1, 2, 0])
    render = jax.jit(lambda zz: jax.vmap(lambda a, d: gan.render(p, A, a, d, CG))(zz, u))
    one = jnp.array([0.0, 1.0, 0.0])
    exact = float(jax.jit(gan.exact_sparsity, static_argnums=1)(p, A, z, u, CG, one, jnp.ones(3)))
    small = float(gan.fd_sparsity(render, z, 1, 1.0, 1e-6))
    np.testing.assert_allclose(small, exact, rtol=1e-4)
    # the latent twice as large and the generator reading it at half: the same value
    c = 2.0
    scaled = lambda zz: render(zz.at[:, 1].multiply(1 / c))  # noqa: E731
    z2 = z.at[:, 1].multiply(c)
    a = gan.fd_sparsity(render, z, 1, -1.0, 0.3, gan.latent_scale(z)[1])
    b = gan.fd_sparsity(scaled, z2, 1, -1.0, 0.3, gan.latent_scale(z2)[1])
    np.testing.assert_allclose(float(a), float(b), rtol=1e-7)


def test_perturbation_draws_only_kept_latents_and_both_signs():
    w = jnp.array([0.0, 1.0, 0.0, 1.0])
    draws = [gan.draw_perturbation(jax.random.PRNGKey(i), w) for i in range(200)]
    idx = {int(i) for i, _ in draws}
    signs = {float(s) for _, s in draws}
    assert idx == {1, 3} and signs == {-1.0, 1.0}
    assert int(gan.draw_perturbation(jax.random.PRNGKey(0), jnp.zeros(4))[0]) == 0  # none kept: the first


@pytest.mark.slow  # a float64 conv net compiled twice: about 4 s (suite time)
def test_r1_penalty_matches_directional_finite_differences(x64):
    d = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), gan.init_discriminator(jax.random.PRNGKey(6), A))
    x = jax.random.uniform(jax.random.PRNGKey(7), (2, 8, 8, 3), jnp.float64)
    u = jnp.array([0, 2])
    g = jax.jit(jax.grad(lambda xx: jnp.sum(gan.discriminate(d, xx, u))))(x)
    penalty = float(jax.jit(gan.r1_penalty)(d, x, u))
    disc = jax.jit(lambda xx: gan.discriminate(d, xx, u))
    np.testing.assert_allclose(penalty, float(jnp.mean(jnp.sum(g**2, axis=(1, 2, 3)))), rtol=1e-10)
    v = jax.random.normal(jax.random.PRNGKey(8), x.shape, jnp.float64)
    h = 1e-6
    fd = (disc(x + h * v) - disc(x - h * v)) / (2 * h)
    np.testing.assert_allclose(np.asarray(fd), np.asarray(jnp.sum(g * v, axis=(1, 2, 3))), rtol=1e-6)


def test_generate_gives_images_in_the_unit_interval_and_the_cgan_ignores_the_prior():
    p = params()
    eps = jax.random.normal(jax.random.PRNGKey(0), (5, 4))
    u = jnp.array([0, 1, 2, 0, 1])
    gen = jax.jit(gan.generate, static_argnums=1)
    x, z_hat = gen(p, A, eps, u, CG)
    assert x.shape == (5, 8, 8, 3) and bool(jnp.all((x > 0) & (x < 1)))
    cgan = gan.Variant(*(jnp.float32(v) for v in (0, 0, 0, 1)))
    _, z_plain = gen(p, A, eps, u, cgan)
    np.testing.assert_allclose(np.asarray(z_plain), np.asarray(eps), rtol=1e-6)


@pytest.mark.parametrize(
    "learned, match, expected",
    [
        ([1, 1, 0, 0], [2, 3, 0, 1], (1.0, 1.0)),  # both learned latents matched to the true specific ones
        ([1, 1, 1, 1], [2, 3, 0, 1], (0.5, 1.0)),  # the dense guess
        ([1, 0, 1, 0], [2, 3, 0, 1], (0.5, 0.5)),
        ([0, 0, 0, 0], [2, 3, 0, 1], (0.0, 0.0)),  # nothing learned: precision 0 by convention
    ],
)
def test_mask_recovery_on_hand_built_cases(learned, match, expected):
    truth = np.array([False, False, True, True])
    assert gan.mask_recovery(np.array(learned, bool), truth, np.array(match)) == pytest.approx(expected)
