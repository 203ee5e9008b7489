"""Image slot-decoder models: the slot-by-slot Jacobian against jax.jacfwd and float64 central
differences, the two compositions' structure (depth order; additivity), the encoder's shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mechind import criteria, scene_models

H = W = 8


def random_params(key, k, s=4, hidden=(16, 16)):
    p = scene_models.init_decoder(key, k, s, hidden)
    # non-zero biases and background, so no term of the composition vanishes by accident
    p["b_0"] = jax.random.normal(jax.random.fold_in(key, 1), p["b_0"].shape)
    p["background"] = jnp.array([0.2, 0.5, 0.7])
    return p


@pytest.mark.parametrize(
    "composition,k",
    [("alpha", 3), pytest.param("sum", 2, marks=pytest.mark.slow)],  # sum: slow (suite time)
)
def test_slot_by_slot_jacobian_equals_jacfwd(composition, k):
    p = random_params(jax.random.PRNGKey(k), k)
    z = jax.random.normal(jax.random.PRNGKey(7), (k * 4,))
    got = jax.jit(scene_models.jacobian, static_argnums=(2, 3, 4, 5))(p, z, k, H, W, composition)
    want = jax.jit(jax.jacfwd(lambda u: scene_models.decode(p, u, k, H, W, composition)))(z)
    assert got.shape == (H * W * 3, k * 4)
    np.testing.assert_allclose(got, want, atol=1e-6 * float(jnp.abs(want).max()))


@pytest.mark.slow  # jacfwd equality above is exact; the renderer's own FD test stays in the default suite
def test_jacobian_against_float64_central_differences():
    with jax.enable_x64(True):
        p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), random_params(jax.random.PRNGKey(3), 2))
        z = jax.random.normal(jax.random.PRNGKey(4), (8,), jnp.float64)
        f = lambda u: scene_models.decode(p, u, 2, H, W, "alpha")  # noqa: E731
        got = np.asarray(jax.jit(scene_models.jacobian, static_argnums=(2, 3, 4, 5))(p, z, 2, H, W, "alpha"))
        eps = 1e-6
        steps = eps * jnp.eye(8)
        fd = np.asarray((jax.jit(jax.vmap(f))(z + steps) - jax.jit(jax.vmap(f))(z - steps)) / (2 * eps)).T
    np.testing.assert_allclose(got, fd, atol=1e-6 * np.abs(fd).max())


def test_alpha_composition_is_depth_ordered():
    # slot 1 opaque (huge alpha logit) everywhere: the image is its colour, whatever slot 0 does
    layers = jnp.zeros((2, 5, 4)).at[0, :, :3].set(0.9).at[1, :, :3].set(0.1).at[1, :, 3].set(50.0)
    img = scene_models.composite(layers, jnp.array([0.3, 0.3, 0.3]), "alpha")
    np.testing.assert_allclose(img, 0.1, atol=1e-6)
    # transparent slots show the background
    clear = layers.at[:, :, 3].set(-50.0)
    np.testing.assert_allclose(scene_models.composite(clear, jnp.array([0.3, 0.2, 0.1]), "alpha")[0], [0.3, 0.2, 0.1])


def test_sum_decoder_is_additive_and_alpha_is_not():
    p = random_params(jax.random.PRNGKey(5), 2, hidden=(8,))
    z = jax.random.normal(jax.random.PRNGKey(6), (4, 8))
    res = {
        c: criteria.evaluate("type_h2", lambda u, c=c: scene_models.decode(p, u, 2, 4, 4, c), z, (4, 4)).fraction()
        for c in scene_models.COMPOSITIONS
    }
    assert res == {"sum": 1.0, "alpha": 0.0}


def test_sum_decodings_add_up_to_the_image():
    p = random_params(jax.random.PRNGKey(8), 3)
    z = jax.random.normal(jax.random.PRNGKey(9), (12,))
    slots = scene_models.slot_decodings(p, z, 3, H, W, "sum")
    img = scene_models.decode(p, z, 3, H, W, "sum").reshape(H, W, 3)
    np.testing.assert_allclose(jnp.sum(slots - p["background"], 0) + p["background"], img, atol=1e-5)


@pytest.mark.parametrize("size,downs", [(16, 2), pytest.param(64, 4, marks=pytest.mark.slow)])
def test_encoder_shapes(size, downs):
    assert scene_models.num_downsamplings(size, size) == downs
    assert scene_models.num_downsamplings(8, 8) == 1 and scene_models.num_downsamplings(32, 24) == 3
    enc = scene_models.ConvEncoder(8, channels=4, hidden=8)
    params = enc.init(jax.random.PRNGKey(0), jnp.zeros((size, size, 3)))
    assert enc.apply(params, jnp.zeros((5, size, size, 3))).shape == (5, 8)
    assert enc.apply(params, jnp.zeros((size, size, 3))).shape == (8,)


@pytest.mark.parametrize("h,w", [(8, 8), (7, 5)])
def test_strided_conv_is_flax_conv_without_the_conv_op(h, w):
    import flax.linen as nn

    x = jax.random.normal(jax.random.PRNGKey(0), (2, h, w, 3))
    params = scene_models.StridedConv(5).init(jax.random.PRNGKey(1), x)
    ref = nn.Conv(5, (3, 3), strides=(2, 2), padding="SAME").apply(params, x)
    np.testing.assert_allclose(scene_models.StridedConv(5).apply(params, x), ref, atol=2e-6)


@pytest.mark.parametrize("composition", scene_models.COMPOSITIONS)
def test_contrast_from_slot_norms_equals_the_contrast_of_the_full_jacobian(composition):
    from mechind import losses

    p = random_params(jax.random.PRNGKey(2), 2, hidden=(8, 8))
    z = jax.random.normal(jax.random.PRNGKey(3), (3, 8))

    @jax.jit
    def both(q):
        full = jax.vmap(jax.jacfwd(lambda u: scene_models.decode(q, u, 2, H, W, composition)))(z)
        return scene_models.compositional_contrast(q, z, 2, H, W, composition), losses.compositional_contrast(
            full, (4, 4)
        )

    got, want = both(p)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    g_got, g_want = jax.jit(jax.jacrev(lambda q: jnp.stack(both(q))))(p)["layers"][0]["w"]
    np.testing.assert_allclose(g_got, g_want, atol=1e-5 * float(jnp.abs(g_want).max()))
