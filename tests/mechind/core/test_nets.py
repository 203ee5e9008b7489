"""mechind.core.nets: activations, the MLP and its initialisations, the batched MLPs, the
Gaussian log-density and the condition number, against hand values, scipy and numpy."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from mechind.core import nets, rng


def test_leaky_hand_values():
    x = jnp.array([-5.0, -1.0, 0.0, 0.5, 3.0])
    np.testing.assert_allclose(np.asarray(nets.leaky(x)), [-1.0, -0.2, 0.0, 0.5, 3.0], rtol=1e-6)
    assert nets.NEGATIVE_SLOPE == 0.2


def test_xtanh_hand_values():
    x = jnp.array([-2.0, 0.0, 1.0])
    np.testing.assert_allclose(
        np.asarray(nets.xtanh(x)), np.tanh([-2.0, 0.0, 1.0]) + 0.1 * np.array([-2.0, 0, 1]), rtol=1e-6
    )
    assert float(nets.xtanh(jnp.float32(1.0), slope=0.5)) == pytest.approx(np.tanh(1.0) + 0.5, rel=1e-6)
    assert nets.ACTIVATIONS == {"lrelu": nets.leaky, "xtanh": nets.xtanh}


def _numpy_mlp(layers, x, act):
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = act(x)
    return x


def _hand_params(shapes, seed):
    """Parameters of the given shapes, drawn by numpy (no initialiser traced: they compile slowly)."""
    r = np.random.default_rng(seed)
    return jax.tree.map(lambda s: r.normal(size=s.shape).astype(np.float32), shapes)


@pytest.mark.parametrize(
    "activation, act",
    [
        ("lrelu", lambda a: np.where(a > 0, a, 0.2 * a)),
        ("xtanh", lambda a: np.tanh(a) + 0.1 * a),
    ],
)
def test_mlp_shapes_and_forward_pass(activation, act):
    mlp = nets.MLP((7, 5, 3), activation=activation)
    x = np.random.default_rng(0).normal(size=(2, 4, 6)).astype(np.float32)
    shapes = jax.eval_shape(mlp.init, jax.random.PRNGKey(0), x)["params"]
    assert {k: (v["kernel"].shape, v["bias"].shape) for k, v in shapes.items()} == {
        "Dense_0": ((6, 7), (7,)),
        "Dense_1": ((7, 5), (5,)),
        "Dense_2": ((5, 3), (3,)),
    }
    params = _hand_params(shapes, 1)
    y = jax.jit(mlp.apply)({"params": params}, x)
    assert y.shape == (2, 4, 3)
    layers = [(params[f"Dense_{i}"]["kernel"], params[f"Dense_{i}"]["bias"]) for i in range(3)]
    np.testing.assert_allclose(np.asarray(y), _numpy_mlp(layers, x, act), rtol=1e-5, atol=1e-5)


def test_mlp_torch_init_within_pytorch_linear_bounds():
    """init_scheme="torch": weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's nn.Linear."""
    mlp = nets.MLP((200, 3), init_scheme="torch")
    params = jax.jit(rng.traced_in_fast_mode(lambda k: mlp.init(k, jnp.zeros(4))))(rng.key(2))["params"]
    for name, fan_in in (("Dense_0", 4), ("Dense_1", 200)):
        bound = 1 / np.sqrt(fan_in)
        w, b = np.asarray(params[name]["kernel"]), np.asarray(params[name]["bias"])
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
        assert np.abs(b).max() <= bound and b.std() > 0  # biases drawn too, not zero
        np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.15)  # the std of U(-bound, bound)
    assert np.abs(np.asarray(params["Dense_0"]["bias"])).max() > 0.9 * 0.5


def test_mlp_rejects_an_unknown_init():
    with pytest.raises(ValueError, match="init must be one of"):
        jax.eval_shape(nets.MLP((3,), init_scheme="xavier").init, jax.random.PRNGKey(0), jnp.zeros(2))


@pytest.mark.slow
def test_mlp_lecun_init_zero_bias_and_variance_one_over_fan_in():
    mlp = nets.MLP((400, 2))
    params = jax.jit(rng.traced_in_fast_mode(lambda k: mlp.init(k, jnp.zeros(100))))(rng.key(1))["params"]
    w, b = np.asarray(params["Dense_0"]["kernel"]), np.asarray(params["Dense_0"]["bias"])
    assert not b.any()
    np.testing.assert_allclose(w.std(), 1 / np.sqrt(100), rtol=0.05)


class _Parallel(nn.Module):
    num: int
    hidden: tuple
    out_dim: int
    scheme: str = "lecun"

    @nn.compact
    def __call__(self, h):
        return nets.parallel_mlp(self, h, self.num, self.hidden, self.out_dim, self.scheme)


def test_parallel_mlp_equals_separate_mlps():
    num, hidden, out = 3, (6, 5), 2
    mod = _Parallel(num, hidden, out)
    h = np.random.default_rng(3).normal(size=(7, num, 4)).astype(np.float32)
    shapes = jax.eval_shape(mod.init, jax.random.PRNGKey(0), h)["params"]
    assert {k: v.shape for k, v in shapes.items()} == {
        "w0": (num, 4, 6),
        "b0": (num, 6),
        "w1": (num, 6, 5),
        "b1": (num, 5),
        "w2": (num, 5, 2),
        "b2": (num, 2),
    }
    params = _hand_params(shapes, 4)
    y = jax.jit(mod.apply)({"params": params}, h)
    assert y.shape == (7, num, out)
    leaky = lambda a: np.where(a > 0, a, 0.2 * a)  # noqa: E731
    for k in range(num):  # MLP k: its own weights, its own input slice
        layers = [(params[f"w{i}"][k], params[f"b{i}"][k]) for i in range(3)]
        np.testing.assert_allclose(np.asarray(y[:, k]), _numpy_mlp(layers, h[:, k], leaky), rtol=1e-5, atol=1e-5)


def test_parallel_mlp_rejects_an_unknown_init():
    with pytest.raises(ValueError, match="init must be one of"):
        jax.eval_shape(_Parallel(2, (3,), 1, "xavier").init, jax.random.PRNGKey(0), jnp.zeros((2, 3)))


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["lecun", "torch"])
def test_parallel_mlp_init(scheme):
    mod = _Parallel(4, (64,), 2, scheme)
    params = jax.jit(rng.traced_in_fast_mode(lambda k: mod.init(k, jnp.zeros((4, 16)))))(rng.key(5))["params"]
    w0, b0 = np.asarray(params["w0"]), np.asarray(params["b0"])  # fan_in 16
    assert not np.allclose(w0[0], w0[1])  # the MLPs are drawn independently
    if scheme == "lecun":
        assert not b0.any()
        np.testing.assert_allclose(w0.std(), 1 / np.sqrt(16), rtol=0.1)
    else:
        assert np.abs(w0).max() <= 0.25 and np.abs(w0).max() > 0.9 * 0.25
        assert np.abs(b0).max() <= 0.25 and b0.std() > 0
        assert np.abs(np.asarray(params["w1"])).max() <= 1 / 8  # fan_in 64


def test_gaussian_log_prob_equals_scipy():
    r = np.random.default_rng(5)
    x, mean, log_var = r.normal(size=(3, 4)), r.normal(size=(3, 4)), r.normal(size=(3, 4))
    x[0], mean[0], log_var[0] = 0.0, 0.0, 0.0  # a standard normal at its mean, d = 4: -2 log(2 pi)
    ours = np.asarray(jax.jit(nets.gaussian_log_prob)(x, mean, log_var))
    want = stats.norm.logpdf(x, mean, np.exp(0.5 * log_var)).sum(-1)
    assert ours.shape == (3,) and ours[0] == pytest.approx(-2 * np.log(2 * np.pi), rel=1e-6)
    np.testing.assert_allclose(ours, want, rtol=1e-5)


def test_condition_number_equals_numpy_cond():
    r = np.random.default_rng(6)
    w = r.normal(size=(6, 3)) @ np.diag([1.0, 3.0, 10.0])
    q, _ = np.linalg.qr(r.normal(size=(6, 3)))  # orthonormal columns, scaled: condition number 2 / 0.5
    a, b = r.normal(size=(2, 6))
    singular = np.stack([a, 2 * a, b], 1)  # rank 2
    cond = np.asarray(
        jax.jit(jax.vmap(nets.condition_number))(np.stack([w, q * [2.0, 0.5, 1.0], singular]).astype(np.float32))
    )
    assert cond[0] == pytest.approx(np.linalg.cond(w), rel=1e-3)
    assert cond[1] == pytest.approx(4.0, rel=1e-4)
    assert np.isfinite(cond[2]) and cond[2] > 1e3  # huge, not NaN or a division by zero
