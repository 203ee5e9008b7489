"""Benchmark: per-sample Jacobian and Hessian throughput, JAX vs torch.func.

python -m experiments.bench.derivatives [--batch 256] [--repeats 5] [--out results/bench]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench import common, torch_port
from mechind import models
from mechind.core import derivatives

SIZES = ((6, 80, 40), (15, 80, 100), (15, 256, 200))  # (d_z, hidden, d_x)


def run(batch: int = 256, repeats: int = 5, sizes=SIZES) -> list[dict]:
    import torch

    rows = []
    for d_z, h, d_x in sizes:
        dec = models.MLP((h, h, d_x))
        params = dec.init(jax.random.PRNGKey(0), jnp.zeros((d_z,)))["params"]
        fn = lambda z, p=params: dec.apply({"params": p}, z)  # noqa: E731
        z = jax.random.normal(jax.random.PRNGKey(1), (batch, d_z))
        jac = jax.jit(lambda z: derivatives.jacobian(fn, z, mode="fwd"))
        hes = jax.jit(lambda z: derivatives.hessian(fn, z))
        _, tjac, thes = torch_port.jacobian_fn(d_x, d_z, (h, h))
        zt = torch.as_tensor(np.asarray(z))
        for what, jf, tf in (("jacobian", jac, tjac), ("hessian", hes, thes)):
            tj = common.median_time(lambda: common.block(jf(z)), repeats)
            with torch.no_grad():
                tt = common.median_time(lambda: tf(zt), repeats)
            rows.append(
                {
                    "what": what,
                    "d_z": d_z,
                    "hidden": h,
                    "d_x": d_x,
                    "batch": batch,
                    "jax_s": tj["median_s"],
                    "torch_s": tt["median_s"],
                    "jax_samples_per_s": batch / tj["median_s"],
                    "torch_samples_per_s": batch / tt["median_s"],
                    "speedup": tt["median_s"] / tj["median_s"],
                }
            )
            print(
                f"{what:8s} d_z={d_z:3d} h={h:3d} d_x={d_x:3d}: jax {tj['median_s'] * 1e3:8.2f} ms  "
                f"torch {tt['median_s'] * 1e3:8.2f} ms  x{rows[-1]['speedup']:.1f}"
            )
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256, help="samples per call")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    ap.add_argument("--out", default="results/bench", help="output folder for derivatives.json")
    args = ap.parse_args(argv)
    rows = run(args.batch, args.repeats)
    common.write(args.out, "derivatives", {"rows": rows})
    return {"rows": rows}


if __name__ == "__main__":
    main()
