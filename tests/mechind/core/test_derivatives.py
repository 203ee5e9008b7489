import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechind.core import derivatives
from tests.conftest import random_mlp


@pytest.mark.parametrize("sizes", [(3, 8, 5), (6, 16, 2), (4, 4), (5, 10, 10, 7)])
@pytest.mark.parametrize("mode", ["auto", "fwd", "rev"])
def test_jacobian_matches_central_differences(x64, sizes, mode):
    fn, _ = random_mlp(jax.random.PRNGKey(len(sizes)), sizes)
    x = jax.random.normal(jax.random.PRNGKey(1), (7, sizes[0]))
    jac = derivatives.jacobian(fn, x, mode=mode)
    fd = derivatives.finite_difference_jacobian(fn, x, eps=1e-5, scheme="central")
    assert jac.shape == (7, sizes[-1], sizes[0])
    np.testing.assert_allclose(jac, fd, rtol=1e-6, atol=1e-8)


def test_jacobian_closed_form_linear_and_elementwise():
    a = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    np.testing.assert_allclose(derivatives.jacobian(lambda v: a @ v, x), np.broadcast_to(a, (4, 5, 3)), rtol=1e-6)
    # d tanh(x_i) / d x_j = delta_ij (1 - tanh^2 x_i)
    j = derivatives.jacobian(jnp.tanh, x)
    expect = jax.vmap(jnp.diag)(1 - jnp.tanh(x) ** 2)
    np.testing.assert_allclose(j, expect, rtol=1e-6)


def test_hessian_closed_form_quadratic_and_fd(x64):
    # f(x) = [x^T A x, sum sin(x)]: H_0 = A + A^T, H_1 = diag(-sin x)
    a = jax.random.normal(jax.random.PRNGKey(0), (3, 3))
    fn = lambda v: jnp.stack([v @ a @ v, jnp.sum(jnp.sin(v))])  # noqa: E731
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    h = derivatives.hessian(fn, x)
    assert h.shape == (5, 2, 3, 3)
    np.testing.assert_allclose(h[:, 0], np.broadcast_to(a + a.T, (5, 3, 3)), rtol=1e-10)
    np.testing.assert_allclose(h[:, 1], jax.vmap(jnp.diag)(-jnp.sin(x)), rtol=1e-10)
    # and on a random MLP, against differences of the exact Jacobian
    mlp, _ = random_mlp(jax.random.PRNGKey(2), (4, 9, 3))
    xm = jax.random.normal(jax.random.PRNGKey(3), (3, 4))
    hm = derivatives.hessian(mlp, xm)
    jac_fn = lambda v: jax.jacrev(mlp)(v).reshape(-1)  # noqa: E731
    fd = derivatives.finite_difference_jacobian(jac_fn, xm, eps=1e-5, scheme="central").reshape(3, 3, 4, 4)
    np.testing.assert_allclose(hm, fd, rtol=1e-5, atol=1e-8)


def test_third_derivative_closed_form(x64):
    fn = lambda v: jnp.stack([v[0] ** 2 * v[1], jnp.exp(v[1])])  # noqa: E731
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 2))
    d3 = derivatives.derivative(fn, x, 3)
    assert d3.shape == (4, 2, 2, 2, 2)
    # d^3 (x0^2 x1) / dx0 dx0 dx1 = 2 (all orderings); everything else 0
    for idx in [(0, 0, 1), (0, 1, 0), (1, 0, 0)]:
        np.testing.assert_allclose(d3[(slice(None), 0) + idx], 2.0)
    assert float(jnp.abs(d3[:, 0, 1, 1, 1]).max()) == 0.0
    np.testing.assert_allclose(d3[:, 1, 1, 1, 1], jnp.exp(x[:, 1]), rtol=1e-12)


def test_cross_derivatives_zero_for_additive_nonzero_for_product(x64):
    add = lambda v: jnp.stack([jnp.sin(v[0]) * v[1], v[2] ** 3])  # slots (2, 1): additive  # noqa: E731
    prod = lambda v: jnp.stack([jnp.sin(v[0]) * v[2], v[1]])  # noqa: E731
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 3))
    assert float(jnp.abs(derivatives.cross_derivatives(add, x, (2, 1), 2)).max()) == 0.0
    cd = derivatives.cross_derivatives(prod, x, (2, 1), 2)
    np.testing.assert_allclose(cd[:, 0, 0, 2], jnp.cos(x[:, 0]), rtol=1e-12)
    # within-slot second derivative is masked out
    assert float(jnp.abs(cd[:, 0, 0, 0]).max()) == 0.0


def test_slot_blocks_and_norms():
    jac = jnp.arange(2 * 3 * 5, dtype=jnp.float32).reshape(2, 3, 5)
    blocks = derivatives.slot_blocks(jac, (2, 3))
    assert [b.shape for b in blocks] == [(2, 3, 2), (2, 3, 3)]
    norms = derivatives.slot_block_norms(jac, (2, 3))
    np.testing.assert_allclose(norms[:, 0], jnp.linalg.norm(jac[..., :2], axis=-1), rtol=1e-6)
    np.testing.assert_allclose(norms[:, 1], jnp.linalg.norm(jac[..., 2:], axis=-1), rtol=1e-6)
    # the gradient through an all-zero block is finite (0), not NaN
    g = jax.grad(lambda j: derivatives.slot_block_norms(j, (2, 3)).sum())(jnp.zeros((1, 3, 5)))
    assert bool(jnp.all(jnp.isfinite(g)))


def test_under_jit_vmap_and_grad(x64):
    """Jacobians inside an outer vmap over parameters and under grad, vs non-jit and FD."""
    fn, params = random_mlp(jax.random.PRNGKey(0), (3, 6, 4))
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 3))

    def penalty(params):
        return jnp.sum(derivatives.jacobian(lambda v: fn(v, params), x) ** 2)

    val = penalty(params)
    np.testing.assert_allclose(jax.jit(penalty)(params), val, rtol=1e-12)
    # outer vmap over 3 parameter sets (e.g. seeds)
    stacked = jax.tree.map(lambda p: jnp.stack([p, 2 * p, -p]), params)
    vals = jax.vmap(penalty)(stacked)
    np.testing.assert_allclose(vals[0], val, rtol=1e-12)
    np.testing.assert_allclose(vals[2], penalty(jax.tree.map(lambda p: -p, params)), rtol=1e-12)
    # grad through the Jacobian against central differences along a random direction
    g = jax.grad(penalty)(params)
    direction = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
    h = 1e-6
    plus = penalty(jax.tree.map(lambda p, d: p + h * d, params, direction))
    minus = penalty(jax.tree.map(lambda p, d: p - h * d, params, direction))
    dd = sum(jnp.sum(a * b) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(direction)))
    np.testing.assert_allclose(dd, (plus - minus) / (2 * h), rtol=1e-6)


def test_forward_difference_is_first_order(x64):
    fn = lambda v: jnp.stack([jnp.exp(v[0]) * v[1]])  # noqa: E731
    x = jnp.array([[0.3, 0.7]])
    exact = derivatives.jacobian(fn, x)
    err = [float(jnp.abs(derivatives.finite_difference_jacobian(fn, x, eps=h) - exact).max()) for h in (1e-2, 1e-3)]
    assert 5 < err[0] / err[1] < 20  # O(h)
    errc = [
        float(jnp.abs(derivatives.finite_difference_jacobian(fn, x, eps=h, scheme="central") - exact).max())
        for h in (1e-2, 1e-3)
    ]
    assert errc[1] < err[1] / 100  # O(h^2)


@settings(max_examples=10, deadline=None)  # each new shape compiles twice
@given(d_in=st.integers(1, 5), d_out=st.integers(1, 5), seed=st.integers(0, 1000))
def test_fwd_equals_rev_property(d_in, d_out, seed):
    fn, _ = random_mlp(jax.random.PRNGKey(seed), (d_in, 4, d_out))
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (3, d_in))
    np.testing.assert_allclose(
        derivatives.jacobian(fn, x, "fwd"), derivatives.jacobian(fn, x, "rev"), rtol=1e-5, atol=1e-6
    )
    assert derivatives.choose_mode(d_in, d_out) == ("fwd" if d_in <= d_out else "rev")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: derivatives.jacobian(jnp.sin, jnp.ones(3)), "shape \\[B, d_in\\]"),
        (lambda: derivatives.jacobian(jnp.sin, jnp.ones((2, 3)), mode="sideways"), "mode"),
        (lambda: derivatives.jacobian(lambda v: jnp.outer(v, v), jnp.ones((2, 3))), "\\[d_out\\]"),
        (lambda: derivatives.finite_difference_jacobian(jnp.sin, jnp.ones((2, 3)), eps=0.0), "eps"),
        (lambda: derivatives.finite_difference_jacobian(jnp.sin, jnp.ones((2, 3)), scheme="back"), "scheme"),
        (lambda: derivatives.slot_blocks(jnp.ones((2, 3, 5)), (2, 2)), "sum to 4"),
        (lambda: derivatives.check_slot_sizes((2, 0)), "positive"),
        (lambda: derivatives.derivative(jnp.sin, jnp.ones((2, 3)), 0), "order"),
        (lambda: derivatives.cross_derivatives(jnp.sin, jnp.ones((2, 3)), (1, 2), 1), "order >= 2"),
    ],
)
def test_bad_input_raises_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_derivative_of_a_wide_output_in_forward_mode_closed_form():
    # d_out = 9 > d_in = 3: the Jacobian inside is taken in forward mode (an image's case)
    fn = lambda x: jnp.outer(x, x).ravel()  # noqa: E731
    x = jnp.array([[1.0, 2.0, -0.5], [0.3, 0.0, 4.0]])
    eye = np.eye(3)
    want2 = np.einsum("ia,jb->ijab", eye, eye) + np.einsum("ib,ja->ijab", eye, eye)
    np.testing.assert_allclose(derivatives.derivative(fn, x, 2), np.broadcast_to(want2.reshape(9, 3, 3), (2, 9, 3, 3)))
    want1 = np.einsum("ia,bj->bija", eye, x) + np.einsum("bi,ja->bija", x, eye)
    np.testing.assert_allclose(derivatives.derivative(fn, x, 1), want1.reshape(2, 9, 3))
