"""Benchmark: one training step (lambda = 0 and 1) and a whole run, JAX vs our PyTorch
port (:mod:`experiments.bench.torch_port`), on identical data; plus the fidelity check
that both reach the same SIS.

    python -m experiments.bench.step [--K 2] [--run-steps 3000] [--seeds 3] [--out results/bench]

JAX per-step time is a jitted ``lax.scan`` over ``--scan-steps`` steps divided by that
number (one run, no vmap); the port's is its eager Python loop.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench import common, torch_port
from mechind import train
from mechind.core import metrics, rng, runner


def _config(k, steps, num_train=10_000, num_val=2_000):
    return train.SlotConfig(num_slots=k, overlap=0.0, num_train=num_train, num_val=num_val, num_steps=steps)


def step_times(k: int, scan_steps: int, torch_steps: int, repeats: int) -> list[dict]:
    rows = []
    for lam in (0.0, 1.0):
        cfg = _config(k, scan_steps)
        task = train.make_task(cfg, with_contrast=lam > 0)
        key = rng.key(0)
        hp = train.HParams(jnp.float32(lam), jnp.float32(cfg.lr))
        data = jax.jit(task.make_data)(key, None)  # the task draws its own
        state = jax.jit(task.init)(key, data, hp)
        scan = jax.jit(lambda s: runner.scan_steps(task, s, data, hp, jnp.int32(0), scan_steps))
        common.block(scan(state))  # compile
        tj = common.median_time(lambda: common.block(scan(state)), repeats)
        ref = torch_port.SlotAutoencoder(cfg.dataset.obs_dim, k, lam=lam, num_steps=torch_steps)
        x = np.asarray(data["x_train"])
        tt = common.median_time(lambda: ref.train(x, torch_steps), repeats, warmup=1)
        row = {
            "K": k,
            "lam": lam,
            "jax_step_ms": 1e3 * tj["median_s"] / scan_steps,
            "torch_step_ms": 1e3 * tt["median_s"] / torch_steps,
            "scan_steps": scan_steps,
            "torch_steps": torch_steps,
            "repeats": repeats,
        }
        row["speedup"] = row["torch_step_ms"] / row["jax_step_ms"]
        rows.append(row)
        print(
            f"step K={k} λ={lam:g}: jax {row['jax_step_ms']:.3f} ms  torch {row['torch_step_ms']:.3f} ms  "
            f"x{row['speedup']:.1f}"
        )
    return rows


def whole_runs(k: int, steps: int, seeds: int, lam: float) -> dict:
    """Train ``seeds`` runs in each framework on identical data; SIS by the same metric."""
    cfg = _config(k, steps)
    task = train.make_task(cfg, with_contrast=lam > 0)
    keys = rng.seed_keys(range(seeds))
    res = runner.run_group(
        task, keys, train.hparams([lam] * seeds, [cfg.lr] * seeds), chunk_steps=steps, progress=False
    )
    jax_sis = [metrics.sis_from_r2(r) for r in res.metrics["sis_r2"]]
    # one JAX run alone, end to end (compile reported apart)
    one = runner.run_group(task, keys[:1], train.hparams([lam], [cfg.lr]), chunk_steps=steps, progress=False)
    torch_sis, torch_times = [], []
    for s in range(seeds):
        data = jax.jit(task.make_data)(keys[s], None)
        ref = torch_port.SlotAutoencoder(cfg.dataset.obs_dim, k, lam=lam, num_steps=steps, seed=s)
        out = ref.train(np.asarray(data["x_train"]), steps)
        torch_times.append(out["train_s"])
        z_hat = ref.encode(np.asarray(data["x_val"])).reshape(cfg.num_val, k, cfg.slot_dim)
        torch_sis.append(metrics.slot_identifiability_score(np.asarray(data["z_val"]), z_hat))
        print(f"  seed {s}: jax SIS {jax_sis[s]:.3f}  torch SIS {torch_sis[-1]:.3f}  torch {out['train_s']:.1f}s")
    out = {
        "K": k,
        "lam": lam,
        "steps": steps,
        "seeds": seeds,
        "jax_sis": jax_sis,
        "torch_sis": torch_sis,
        "jax_sis_mean": float(np.mean(jax_sis)),
        "jax_sis_std": float(np.std(jax_sis)),
        "torch_sis_mean": float(np.mean(torch_sis)),
        "torch_sis_std": float(np.std(torch_sis)),
        "jax_one_run_train_s": one.train_s,
        "jax_one_run_compile_s": one.compile_s,
        "jax_all_seeds_vmapped_train_s": res.train_s,
        "torch_one_run_train_s": float(np.median(torch_times)),
        "torch_all_seeds_sequential_s": float(np.sum(torch_times)),
    }
    spread = max(out["jax_sis_std"], out["torch_sis_std"])
    out["within_seed_spread"] = abs(out["jax_sis_mean"] - out["torch_sis_mean"]) <= 2 * spread
    print(
        f"whole run ({steps} steps, λ={lam:g}): jax {one.train_s:.1f}s (+{one.compile_s:.1f}s compile)  "
        f"torch {out['torch_one_run_train_s']:.1f}s; SIS jax {out['jax_sis_mean']:.3f}±{out['jax_sis_std']:.3f} "
        f"torch {out['torch_sis_mean']:.3f}±{out['torch_sis_std']:.3f}"
    )
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--K", type=int, default=2, help="number of slots")
    ap.add_argument("--scan-steps", type=int, default=1000, help="JAX steps per timed scan")
    ap.add_argument("--torch-steps", type=int, default=100, help="PyTorch-port steps per timed loop")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    ap.add_argument("--run-steps", type=int, default=3000, help="steps of the whole-run / fidelity comparison")
    ap.add_argument("--seeds", type=int, default=3, help="seeds of the fidelity comparison")
    ap.add_argument("--lam", type=float, default=1e-2, help="λ of the fidelity comparison")
    ap.add_argument("--out", default="results/bench", help="output folder for step.json")
    args = ap.parse_args(argv)
    rows = step_times(args.K, args.scan_steps, args.torch_steps, args.repeats)
    whole = whole_runs(args.K, args.run_steps, args.seeds, args.lam)
    payload = {"steps": rows, "whole_run": whole}
    common.write(args.out, "step", payload)
    return payload


if __name__ == "__main__":
    main()
