"""Benchmark: S vmapped seeds in one program vs S sequential single-seed runs.

    python -m experiments.bench.seeds [--K 2] [--steps 200] [--S 1 5 25 125] [--out results/bench]

Sequential time is S times the measured time of one single-seed run of the same
program (median of repeats): that is what S sequential runs cost once compiled.
"vmapped" is all S runs in one program; "runner" is ``runner.run_group``'s default,
which on a CPU trains slices of at most ``runner.CPU_RUNS_PER_CALL`` runs (one pass of
the training loop, so not a median).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from experiments.bench import common
from mechind import train
from mechind.core import rng, runner


def runner_train_s(k: int, s: int, steps: int, lam: float = 1.0) -> float:
    """Training time of S runs through the runner with its default slicing (CPU: slices
    of ``runner.CPU_RUNS_PER_CALL``), compile excluded."""
    cfg = train.SlotConfig(num_slots=k, overlap=0.0, num_train=10_000, num_val=500, num_steps=steps)
    task = train.make_task(cfg, with_contrast=lam > 0)
    res = runner.run_group(
        task, rng.seed_keys(range(s)), train.hparams([lam] * s, [cfg.lr] * s), chunk_steps=steps, progress=False
    )
    return res.train_s


def time_runs(k: int, s: int, steps: int, repeats: int, lam: float = 1.0) -> float:
    cfg = train.SlotConfig(num_slots=k, overlap=0.0, num_train=10_000, num_val=500, num_steps=steps)
    task = train.make_task(cfg, with_contrast=lam > 0)
    keys = rng.seed_keys(range(s))
    hp = train.hparams([lam] * s, [cfg.lr] * s)
    data = jax.jit(jax.vmap(task.make_data, (0, None)))(keys, None)  # the task draws its own
    state = jax.jit(jax.vmap(task.init))(keys, data, hp)
    fn = jax.jit(jax.vmap(lambda st, d, h: runner.scan_steps(task, st, d, h, jnp.int32(0), steps)))
    common.block(fn(state, data, hp))
    return common.median_time(lambda: common.block(fn(state, data, hp)), repeats)["median_s"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--K", type=int, default=2, help="number of slots")
    ap.add_argument("--num-steps", "--steps", dest="steps", type=int, default=200, help="training steps per timed call")
    ap.add_argument("--S", type=int, nargs="+", default=[1, 5, 25, 125], help="seed counts")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    ap.add_argument("--out", default="results/bench", help="output folder for seeds.json")
    args = ap.parse_args(argv)
    t1 = time_runs(args.K, 1, args.steps, args.repeats)
    rows = []
    for s in args.S:
        tv = t1 if s == 1 else time_runs(args.K, s, args.steps, args.repeats)
        tr = runner_train_s(args.K, s, args.steps)
        rows.append(
            {
                "S": s,
                "vmapped_s": tv,
                "runner_s": tr,
                "sequential_s": s * t1,
                "ratio_vmapped_over_sequential": tv / (s * t1),
                "ratio_runner_over_sequential": tr / (s * t1),
                "ratio_vmapped_over_one_seed": tv / t1,
            }
        )
        print(
            f"S={s:4d}: vmapped {tv:.3f}s  runner {tr:.3f}s  sequential {s * t1:.3f}s  "
            f"ratio {tv / (s * t1):.2f} / runner {tr / (s * t1):.2f}  ({tv / t1:.1f}x one seed)"
        )
    payload = {"K": args.K, "steps": args.steps, "lam": 1.0, "rows": rows}
    common.write(args.out, "seeds", payload)
    return payload


if __name__ == "__main__":
    main()
