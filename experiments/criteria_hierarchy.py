"""Which mechanistic-independence criteria hold for generator families of known structure.

Two slots of two latents each. Every family is built so that its answer is known by
construction (see FAMILIES); the table reports the fraction of sample points at which
each criterion holds, slot irreducibility, and the number of connected components of
the dependency graph G_D in the aligned basis and in random rotated bases. It then
checks the paper's implications (D => M, D => S, D => H2, H2 => H3) point by point and
lists where a weaker criterion survives a stronger one failing.

    python -m experiments.criteria_hierarchy [--points 256] [--out results/criteria_hierarchy]
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import framework
from mechind import criteria, graph
from mechind.core import derivatives, report

SLOTS = (2, 2)


def _net(key, d_in: int, d_out: int):
    """A small random tanh network ``[d_in] -> [d_out]`` (dense: every output sees every input)."""
    k1, k2, k3 = jax.random.split(key, 3)
    w1 = jax.random.normal(k1, (8, d_in)) / np.sqrt(d_in)
    b1 = jax.random.normal(k2, (8,)) * 0.3
    w2 = jax.random.normal(k3, (d_out, 8)) / np.sqrt(8)
    # the linear term keeps every Jacobian entry away from accidental zeros
    return lambda v: w2 @ jnp.tanh(w1 @ v + b1) + 0.1 * v.sum()


def make_families(key) -> dict[str, tuple[callable, str]]:
    """Generator families ``[4] -> [d_x]`` with slots A = z[:2], B = z[2:].

    Returns name -> (generator, what holds by construction).
    """
    ks = jax.random.split(key, 16)
    fa, fb = _net(ks[0], 2, 3), _net(ks[1], 2, 3)
    joint = _net(ks[2], 4, 3)
    shared = _net(ks[3], 4, 1)
    ha, hb = _net(ks[4], 2, 4), _net(ks[5], 2, 4)
    p, q = jax.random.normal(ks[6], (4, 2)), jax.random.normal(ks[7], (4, 2))
    A, B = (lambda z: z[:2]), (lambda z: z[2:])
    fam = {
        "disjoint": (lambda z: jnp.concatenate([fa(A(z)), fb(B(z))]), "D, M, S, H2, H3"),
        "overlap_noncontained": (lambda z: jnp.concatenate([fa(A(z)), shared(z), fb(B(z))]), "M, S; not D, H2, H3"),
        "contained": (
            lambda z: jnp.concatenate([joint(z), fb(B(z))]),
            "none of D, M, S, H2, H3 (supp A inside supp B)",
        ),
        "additive_full_overlap": (lambda z: ha(A(z)) + hb(B(z)), "H2, H3; not D, M, S"),
        "pairwise_multiplicative": (
            lambda z: (1.5 + jnp.tanh(ha(A(z)))) * (1.5 + jnp.tanh(hb(B(z)))),
            "none (cross derivatives of every order)",
        ),
        "bilinear_interaction": (lambda z: ha(A(z)) + hb(B(z)) + (p @ A(z)) * (q @ B(z)), "H3 but not H2"),
        # column-level supports: a1 {0}, a2 {1,2}, b1 {0,3}, b2 {3,4}
        "m_not_s": (
            lambda z: jnp.stack(
                [
                    jnp.tanh(z[0] + 0.7 * z[2]),
                    z[1] + 0.3 * jnp.sin(z[1]),
                    jnp.tanh(z[1]),
                    jnp.tanh(z[2] - z[3]),
                    z[3] + 0.2 * z[3] ** 3,
                ]
            ),
            "M (slot supports not nested) but not S (supp a1 inside supp b1)",
        ),
        # a1 {0,1}, a2 {2,3}, b1 {1,2}, b2 {1,2}: supp B inside supp A, no column inside another slot's
        "s_not_m": (
            lambda z: jnp.stack(
                [
                    jnp.tanh(z[0]),
                    jnp.tanh(z[0] + z[2] - 0.5 * z[3]),
                    jnp.tanh(z[1] - z[2] + 0.8 * z[3]),
                    z[1] + 0.1 * z[1] ** 3,
                ]
            ),
            "S but not M",
        ),
    }
    return fam


@functools.partial(jax.jit, static_argnums=2)
def _components_in_bases(jac, bases, tol):
    """Mean number of G_D components over points, for each basis ``[M, d, d]`` -> ``[M]``."""
    return jax.vmap(lambda b: jnp.mean(graph.num_components(graph.in_basis(jac, b), tol)))(bases)


CRITERIA = ("type_d", "type_m", "type_s", "type_h2", "type_h3")
IMPLICATIONS = (("type_d", "type_m"), ("type_d", "type_s"), ("type_d", "type_h2"), ("type_h2", "type_h3"))


def run(points: int = 256, num_bases: int = 4, seed: int = 0, tol: float | None = None) -> dict:
    """Evaluate every family; returns rows and the implication checks."""
    key = jax.random.PRNGKey(seed)
    kz, kf, kb = jax.random.split(key, 3)
    z = jax.random.normal(kz, (points, sum(SLOTS)))
    rows, violations, weaker = [], [], []
    for name, (fn, expected) in make_families(kf).items():
        res = criteria.evaluate_all(fn, z, SLOTS, tol=tol, only=CRITERIA)
        jac = derivatives.jacobian(fn, z)
        bases = jnp.concatenate(
            [jnp.eye(4)[None], jax.vmap(lambda k: graph.random_basis(k, 4))(jax.random.split(kb, num_bases))]
        )
        comps = _components_in_bases(jac, bases, graph.check_tol(tol))  # [1 + num_bases]
        aligned, rand = float(comps[0]), np.asarray(comps[1:])
        irr = np.asarray(res["type_d"].irreducible).all(axis=-1).mean()
        rows.append(
            {
                "family": name,
                "expected": expected,
                **{c: res[c].fraction() for c in CRITERIA},
                "irreducible": float(irr),
                "components_aligned": aligned,
                "components_random": float(np.mean(rand)),
            }
        )
        for strong, weak in IMPLICATIONS:
            hs, hw = np.asarray(res[strong].holds), np.asarray(res[weak].holds)
            if np.any(hs & ~hw):
                violations.append(f"{name}: {strong} holds but {weak} fails at {int(np.sum(hs & ~hw))} points")
            if np.any(~hs & hw):
                weaker.append(f"{name}: {weak} holds where {strong} fails")
    return {
        "rows": rows,
        "violations": violations,
        "weaker_survives": weaker,
        "tol": graph.check_tol(tol),
        "points": points,
        "num_bases": num_bases,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=256, help="sample points z ~ N(0, I) per family")
    ap.add_argument("--bases", type=int, default=4, help="random rotated bases for the component count")
    ap.add_argument("--seed", type=int, default=0, help="seed for points, families and bases")
    ap.add_argument(
        "--tol",
        type=float,
        default=None,
        help=f"relative tolerance for calling a derivative zero (default {graph.DEFAULT_TOL})",
    )
    ap.add_argument("--out", default="results/criteria_hierarchy", help="output folder")
    # the main job passes every part the same options; this part is exact and takes seconds,
    # so the presets compute the same table and there is nothing to resume or show progress of
    ap.add_argument(
        "--preset",
        choices=("quick", "paper"),
        default="quick",
        help="accepted for the main job; both presets compute the same table (seconds)",
    )
    ap.add_argument("--fresh", action="store_true", help="accepted for the main job; every run is fresh")
    ap.add_argument("--no-progress", action="store_true", help="accepted for the main job; no progress bar here")
    ap.add_argument(
        "--debug",
        action="store_true",
        help=f"full tracebacks instead of one-line errors (also: {framework.DEBUG_ENV}=1)",
    )
    args = ap.parse_args(argv)
    if args.points < 1 or args.bases < 1:
        ap.error("--points and --bases must be positive")
    try:
        graph.check_tol(args.tol)
    except ValueError as e:
        ap.error(f"--tol: {e}")
    # the output folder is checked (and held) before the work, not after it
    with framework.command_line(args.debug), report.locked_folder(args.out) as outdir:
        return _run(args, outdir)


def _run(args, outdir: Path) -> dict:
    t0 = time.perf_counter()
    out = run(args.points, args.bases, args.seed, args.tol)
    header = ["family", *CRITERIA, "irreducible", "components_aligned", "components_random", "expected"]
    table = [[r[h] for h in header] for r in out["rows"]]
    md = (
        f"Fraction of {out['points']} points z ~ N(0, I) at which each criterion holds "
        f"(2 slots of 2 latents, relative tol {out['tol']:g}); components of G_D averaged "
        f"over points, random = {out['num_bases']} Haar-random rotations.\n\n"
        + report.markdown_table(header, table)
        + "\nImplications D=>M, D=>S, D=>H2, H2=>H3: "
        + (
            "hold at every point of every family.\n"
            if not out["violations"]
            else "VIOLATED:\n" + "\n".join(f"- {v}" for v in out["violations"]) + "\n"
        )
        + "\nWhere a weaker criterion holds while a stronger one fails:\n"
        + "\n".join(f"- {w}" for w in out["weaker_survives"])
        + "\n"
    )
    report.write_atomic(outdir / "table.md", md)
    report.write_atomic(outdir / "table.csv", report.csv_text(header, table))
    print(md)
    print(f"wrote {outdir}/table.md and table.csv in {time.perf_counter() - t0:.1f} s")
    return out


if __name__ == "__main__":
    main()
