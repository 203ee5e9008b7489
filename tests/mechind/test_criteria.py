import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mechind import criteria, graph

Z = jax.random.normal(jax.random.PRNGKey(0), (16, 4))
SLOTS = (2, 2)


def disjoint(z):  # slot A -> rows 0..2, slot B -> rows 3..5
    return jnp.concatenate(
        [
            jnp.tanh(jnp.array([[1.0, 2.0], [0.5, -1.0], [1.0, 1.0]]) @ z[:2]),
            jnp.tanh(jnp.array([[1.0, -2.0], [0.3, 1.0], [2.0, 1.0]]) @ z[2:]),
        ]
    )


def nested(z):  # supp A = {0, 1} inside supp B = {0, 1, 2}
    return jnp.stack([jnp.tanh(z[0] + z[2]), jnp.tanh(z[1] - z[3]), jnp.tanh(z[2] + 2 * z[3])])


def crossing(z):  # A -> {0, 1}, B -> {1, 2}: overlap, no containment, nonlinear shared row
    return jnp.stack([jnp.tanh(z[0] + z[1]), jnp.tanh(z[0] - z[2] + z[1] * z[3]), jnp.tanh(z[2] + z[3])])


def additive(z):  # full overlap, g = g_A(z_A) + g_B(z_B)
    return jnp.stack([jnp.sin(z[0]) + z[2] ** 3, z[1] * z[0] + jnp.tanh(z[3]), z[0] + z[1] + z[2] - z[3]])


def bilinear(z):  # cross second derivative nonzero, cross third derivative zero
    return additive(z) + jnp.stack([z[0] * z[2], z[1] * z[3], 0.0 * z[0]])


CASES = {  # generator -> which criteria hold by construction
    disjoint: {"type_d": True, "type_m": True, "type_s": True, "type_h2": True, "type_h3": True},
    nested: {"type_d": False, "type_m": False, "type_s": False, "type_h2": False, "type_h3": False},
    crossing: {"type_d": False, "type_m": True, "type_h2": False, "type_h3": False},
    additive: {"type_d": False, "type_m": False, "type_s": False, "type_h2": True, "type_h3": True},
    bilinear: {"type_d": False, "type_m": False, "type_h2": False, "type_h3": True},
}


@pytest.mark.parametrize("gen", list(CASES), ids=lambda g: g.__name__)
def test_known_answers(gen):
    res = criteria.evaluate_all(gen, Z, SLOTS)
    for name, expect in CASES[gen].items():
        assert bool(np.all(np.asarray(res[name].holds) == expect)), (gen.__name__, name, res[name].value)
        assert res[name].tol == graph.DEFAULT_TOL and res[name].exact


def test_nested_is_not_h2_when_rows_mix_nonlinearly():
    # tanh(z0 + z2) has a cross-slot second derivative: nested fails H2 too
    res = criteria.evaluate("type_h2", nested, Z, SLOTS)
    assert not bool(np.any(res.holds))


def test_type_d_value_counts_shared_rows():
    res = criteria.evaluate("type_d", crossing, Z, SLOTS)
    np.testing.assert_array_equal(res.value, 1.0)  # row 1 is shared


def test_type_s_gap_matches_brute_force():
    """rho- - rho+ over all bases whose directions have 1- or 2-coordinate supports."""

    def m_not_s(z):  # a1 {0}, a2 {1,2}, b1 {0,3}, b2 {3,4}
        return jnp.stack(
            [
                jnp.tanh(z[0] + 0.7 * z[2]),
                z[1] + 0.3 * jnp.sin(z[1]),
                jnp.tanh(z[1]),
                jnp.tanh(z[2] - z[3]),
                z[3] + 0.2 * z[3] ** 3,
            ]
        )

    for gen, expect in [(m_not_s, 0.0), (disjoint, None), (additive, 0.0)]:
        res = criteria.evaluate("type_s", gen, Z[:2], SLOTS)
        jac = np.asarray(jax.vmap(jax.jacfwd(gen))(Z[:2]))
        for b in range(2):
            supp = np.abs(jac[b]) > 1e-6 * np.abs(jac[b]).max()
            cols = [set(np.nonzero(supp[:, j])[0]) for j in range(4)]
            rho_plus = sum(len(c) for c in cols)
            # misaligned: replace e_i by e_i + e_j with slot(j) != slot(i)
            rho_minus = min(
                rho_plus - len(cols[i]) + len(cols[i] | cols[j])
                for i in range(4)
                for j in range(4)
                if (i < 2) != (j < 2)
            )
            assert float(res.value[b]) == rho_minus - rho_plus
            if expect is not None:
                assert float(res.value[b]) == expect


def test_irreducibility():
    def reducible(z):  # slot B's two latents act on separate rows: it splits in two
        return jnp.stack([jnp.tanh(z[0] + z[1]), jnp.tanh(z[0] - z[1]), jnp.sin(z[2]), jnp.sin(z[3])])

    res = criteria.evaluate("type_d", reducible, Z, SLOTS)
    np.testing.assert_array_equal(np.asarray(res.irreducible), np.array([[True, False]] * 16))
    res = criteria.evaluate("type_d", disjoint, Z, SLOTS)
    assert bool(np.all(res.irreducible))


def test_basis_change_breaks_type_d():
    rot = graph.random_basis(jax.random.PRNGKey(3), 4)
    aligned = criteria.evaluate("type_d", disjoint, Z, SLOTS)
    rotated = criteria.evaluate("type_d", disjoint, Z, SLOTS, basis=rot)
    assert aligned.fraction() == 1.0 and rotated.fraction() == 0.0
    # a within-slot basis change keeps the slots aligned
    within = jnp.zeros((4, 4)).at[:2, :2].set(graph.random_basis(jax.random.PRNGKey(4), 2)).at[2:, 2:].set(jnp.eye(2))
    assert criteria.evaluate("type_d", disjoint, Z, SLOTS, basis=within).fraction() == 1.0


def test_tolerance_is_relative_and_reported():
    def tiny_leak(z):  # slot B touches row 0 with a weight 1e-8 relative
        return jnp.stack([jnp.tanh(z[0] + z[1]) + 1e-8 * z[2], jnp.tanh(z[2] + z[3])])

    strict = criteria.evaluate("type_d", tiny_leak, Z, SLOTS, tol=1e-10)
    loose = criteria.evaluate("type_d", tiny_leak, Z, SLOTS, tol=1e-6)
    assert strict.fraction() == 0.0 and loose.fraction() == 1.0
    assert strict.tol == 1e-10 and loose.tol == 1e-6
    # scaling the generator does not change the verdict
    big = criteria.evaluate("type_d", lambda z: 1e6 * tiny_leak(z), Z, SLOTS, tol=1e-6)
    assert big.fraction() == 1.0


def test_single_slot():
    res = criteria.evaluate_all(disjoint, Z, (4,))
    assert all(r.fraction() == 1.0 for r in res.values())


def test_registry_round_trip():
    @criteria.register("max_abs_jacobian_below_10")
    def small(fn, z, slot_sizes, tol):
        jac = jax.vmap(jax.jacfwd(fn))(z)
        m = jnp.max(jnp.abs(jac), axis=(1, 2))
        return criteria.CriterionResult("max_abs_jacobian_below_10", m < 10, m, tol, exact=True)

    try:
        assert "max_abs_jacobian_below_10" in criteria.names()
        assert criteria.evaluate("max_abs_jacobian_below_10", disjoint, Z, SLOTS).fraction() == 1.0
        assert criteria.evaluate("max_abs_jacobian_below_10", lambda z: 100 * disjoint(z), Z, SLOTS).fraction() == 0.0
        with pytest.raises(ValueError, match="already registered"):
            criteria.register("max_abs_jacobian_below_10")(small)
    finally:
        criteria.unregister("max_abs_jacobian_below_10")
    assert "max_abs_jacobian_below_10" not in criteria.names()


def test_builtin_names():
    assert {"type_d", "type_m", "type_s", "type_h2", "type_h3"} <= set(criteria.names())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="type_q"), "unknown criterion 'type_q'"),
        (dict(slot_sizes=(2, 3)), "sum to 5, but the input dimension is 4"),
        (dict(tol=0.0), "tol must be a positive"),
        (dict(tol=-1e-3), "tol must be a positive"),
        (dict(z=jnp.ones(4)), "z must have shape"),
        (dict(basis=jnp.eye(3)), "basis must have shape"),
        (dict(fn=lambda v: jnp.outer(v, v)), "\\[d_out\\]"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(name="type_d", fn=disjoint, z=Z, slot_sizes=SLOTS)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        criteria.evaluate(args.pop("name"), args.pop("fn"), args.pop("z"), args.pop("slot_sizes"), **args)
