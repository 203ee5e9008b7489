"""Benchmark: a full experiment slice end to end, and the paper grid extrapolated from it.

    python -m experiments.bench.slice [--steps 1000] [--Ks 2 3 5] [--out results/bench]

A slice is one compiled (K, overlap) group of the mechanistic-independence sweep:
3 lambdas x 5 seeds = 15 runs with compositional contrast, Brady et al.'s sizes
(72k/8k samples, batch 64). Compile, train and evaluation (SIS on 8,000 held-out samples)
are timed apart. The paper grid (3 K x 6 overlaps x 15 runs x 115,000 steps) is then
extrapolated from the measured per-step time; it says so in the output.
"""

from __future__ import annotations

import argparse

from experiments.bench import common
from mechind import train
from mechind.core import rng, runner

PAPER_STEPS = 115_000
OVERLAPS = 6


def slice_time(k: int, steps: int, seeds: int = 5, lams=(0.0, 1e-2, 1.0)) -> dict:
    cfg = train.SlotConfig(num_slots=k, overlap=0.0, num_steps=steps)  # paper sizes
    task = train.make_task(cfg, with_contrast=True)
    runs = len(lams) * seeds
    keys = rng.seed_keys(list(range(seeds)) * len(lams))
    hp = train.hparams([lam for lam in lams for _ in range(seeds)], [cfg.lr] * runs)
    res = runner.run_group(task, keys, hp, chunk_steps=steps, progress=False)
    per_step = res.train_s / steps
    return {
        "K": k,
        "runs": runs,
        "steps": steps,
        "compile_s": res.compile_s,
        "train_s": res.train_s,
        "eval_s": res.eval_s,
        "group_step_ms": 1e3 * per_step,
        "paper_slice_train_s": per_step * PAPER_STEPS,
        "paper_slice_total_s": per_step * PAPER_STEPS + res.compile_s + res.eval_s,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-steps", "--steps", dest="steps", type=int, default=1000, help="measured steps per slice")
    ap.add_argument("--Ks", type=int, nargs="+", default=[2, 3, 5], help="slot counts to measure")
    ap.add_argument("--out", default="results/bench", help="output folder for slice.json")
    args = ap.parse_args(argv)
    rows = []
    for k in args.Ks:
        r = slice_time(k, args.steps)
        rows.append(r)
        print(
            f"slice K={k}: compile {r['compile_s']:.1f}s, {r['steps']} steps {r['train_s']:.1f}s "
            f"({r['group_step_ms']:.2f} ms per step for {r['runs']} runs), eval {r['eval_s']:.1f}s; "
            f"paper slice ≈ {r['paper_slice_total_s'] / 60:.1f} min"
        )
    grid_s = OVERLAPS * sum(r["paper_slice_total_s"] for r in rows)
    payload = {
        "rows": rows,
        "paper_grid_extrapolated_s": grid_s,
        "note": f"extrapolated: {OVERLAPS} overlaps x K in {args.Ks} x 15 runs x {PAPER_STEPS} steps "
        f"from {args.steps} measured steps per slice on this device",
    }
    print(f"paper grid (extrapolated from measured steps on this device): {grid_s / 3600:.2f} h")
    common.write(args.out, "slice", payload)
    return payload


if __name__ == "__main__":
    main()
