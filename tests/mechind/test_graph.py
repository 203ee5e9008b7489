import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import csgraph

from mechind import graph


def _scipy_components(supp):
    adj = (supp.T.astype(int) @ supp.astype(int)) > 0
    n, labels = csgraph.connected_components(adj, directed=False)
    return n, labels


@settings(max_examples=6, deadline=None)  # each new shape compiles: 6 keeps the default suite short
@given(d_x=st.integers(1, 8), d=st.integers(1, 7), p=st.floats(0.05, 0.6), seed=st.integers(0, 10_000))
def test_components_match_scipy(d_x, d, p, seed):
    rng = np.random.default_rng(seed)
    supp = rng.random((d_x, d)) < p
    jac = jnp.asarray(np.where(supp, rng.normal(size=(d_x, d)) + 2.0, 0.0))[None]
    n_ref, lab_ref = _scipy_components(supp)
    assert int(graph.num_components(jac)[0]) == n_ref
    labels = np.asarray(graph.component_labels(jac)[0])
    # same partition: i ~ j in ours iff i ~ j in scipy's
    for i, j in itertools.combinations(range(d), 2):
        assert (labels[i] == labels[j]) == (lab_ref[i] == lab_ref[j])
    # labels are the smallest index of each component
    assert all(labels[i] <= i for i in range(d))


def test_block_diagonal_and_chain():
    block = jnp.zeros((1, 4, 4)).at[0, :2, :2].set(1.0).at[0, 2:, 2:].set(1.0)
    assert int(graph.num_components(block)[0]) == 2
    np.testing.assert_array_equal(graph.component_labels(block)[0], [0, 0, 2, 2])
    chain = jnp.eye(4)[None] + jnp.eye(4, k=1)[None]  # row i touches directions i, i+1
    assert int(graph.num_components(chain)[0]) == 1


def test_random_basis_is_orthogonal_and_mixes():
    q = graph.random_basis(jax.random.PRNGKey(0), 5)
    np.testing.assert_allclose(q.T @ q, np.eye(5), atol=1e-5)
    block = jnp.zeros((1, 4, 4)).at[0, :2, :2].set(1.0).at[0, 2:, 2:].set(1.0)
    assert int(graph.num_components(graph.in_basis(block, graph.random_basis(jax.random.PRNGKey(1), 4)))[0]) == 1


def test_bad_input():
    with pytest.raises(ValueError, match="jac must have shape"):
        graph.num_components(jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="tol"):
        graph.support(jnp.ones((1, 3, 3)), tol=-1.0)
    with pytest.raises(ValueError, match="basis must have shape"):
        graph.in_basis(jnp.ones((1, 3, 3)), jnp.eye(2))
