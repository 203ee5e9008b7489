"""Benchmark: the scene slot autoencoder's training step with the compositional contrast
against the step without (issue 22: goal <= 3x at 32 x 32, K = 2), and the decoder's
per-sample Jacobian three ways: slot by slot (:func:`mechind.scene_models.jacobian`),
``jax.vmap(jax.jacfwd(decode))``, and ``torch.func.vmap(torch.func.jacfwd(f))`` of our
PyTorch port of the decoder with the same weights (:func:`experiments.bench.torch_port.scene_decoder`;
its Jacobian is checked against ours before it is timed).

    python -m experiments.bench.scene_step [--sizes 32 16] [--K 2] [--batch 64] [--scan-steps 20]
        [--repeats 7] [--contrast-batch 16] [--out results/bench]

Step time: a jitted ``lax.scan`` of ``scene_train.train_step`` over ``--scan-steps`` steps
(:func:`mechind.core.runner.scan_steps`, one run, no vmap) divided by that number, for the
step without the contrast, with it on the whole minibatch (``contrast_batch = 0``) and with
it on ``--contrast-batch`` scenes. The variants are timed interleaved (each round runs each
once, in a rotated order) and a ratio is the median of the rounds' ratios, so that a
shared machine's drift hits both sides of a ratio alike. Writes ``scene_step.json`` and
the table as ``scene_step.md``. PyTorch (the bench extra) is optional: without it the
port's row is left out. PyTorch runs on as many threads as XLA's CPU client uses (one per
available core) unless ``--torch-threads`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench import common
from mechind import scene_models, scene_train
from mechind.core import report, rng, runner

VARIANTS = ("plain", "contrast", "contrast_subset")


def interleaved(fns: dict, repeats: int, warmup: int = 1) -> dict:
    """Wall times ``{name: [repeats]}`` of the calls ``fns[name]()``, timed in rounds that run
    each once, the order rotated from round to round (after ``warmup`` untimed rounds)."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            fns[n]()
            times[n].append(time.perf_counter() - t0)
    return times


def paired_ratio(num: list, den: list) -> float:
    """The median over rounds of ``num[r] / den[r]``."""
    return statistics.median(a / b for a, b in zip(num, den))


def config(size: int, k: int, batch: int, steps: int, contrast_batch: int = 0) -> scene_train.SceneSlotConfig:
    return scene_train.SceneSlotConfig(
        num_objects=k,
        height=size,
        width=size,
        batch_size=batch,
        num_steps=steps,
        num_train=max(4096, batch),
        num_val=64,
        lam=1.0,
        contrast_batch=contrast_batch,
    )


def step_times(size: int, k: int, batch: int, scan_steps: int, repeats: int, contrast_batch: int) -> list[dict]:
    """ms per training step of the three variants (:data:`VARIANTS`) and their ratios to the plain step."""
    cb = min(contrast_batch, batch)
    specs = {"plain": (False, 0), "contrast": (True, 0), "contrast_subset": (True, cb)}
    key = rng.key(0)
    # the data and the initial state do not depend on the variant: drawn once, shared
    cfg = config(size, k, batch, scan_steps)
    base = scene_train.make_task(cfg)
    hp = scene_train.HParams(jnp.float32(cfg.lam), jnp.float32(cfg.lr))
    data = jax.jit(base.make_data)(key, None)
    state = jax.jit(base.init)(key, data, hp)
    scans, compile_s = {}, {}
    for name, (with_contrast, m) in specs.items():
        task = scene_train.make_task(config(size, k, batch, scan_steps, m), with_contrast=with_contrast)
        fn = jax.jit(lambda s, task=task: runner.scan_steps(task, s, data, hp, jnp.int32(0), scan_steps))
        t0 = time.perf_counter()
        common.block(fn(state))
        compile_s[name] = time.perf_counter() - t0
        scans[name] = lambda fn=fn: common.block(fn(state))
    times = interleaved(scans, repeats)
    rows = []
    for name, (with_contrast, m) in specs.items():
        ts = times[name]
        rows.append(
            {
                "size": size,
                "K": k,
                "batch": batch,
                "variant": name,
                "with_contrast": with_contrast,
                "contrast_scenes": (m or batch) if with_contrast else 0,
                "step_ms": 1e3 * statistics.median(ts) / scan_steps,
                "step_ms_min": 1e3 * min(ts) / scan_steps,
                "step_ms_max": 1e3 * max(ts) / scan_steps,
                "ratio_to_plain": paired_ratio(ts, times["plain"]),
                "first_call_s": compile_s[name],
                "scan_steps": scan_steps,
                "repeats": repeats,
            }
        )
        r = rows[-1]
        print(
            f"step {size}x{size} K={k} B={batch} {name:15s} ({r['contrast_scenes']:3d} scenes): "
            f"{r['step_ms']:8.2f} ms  x{r['ratio_to_plain']:.2f}"
        )
    return rows


def jacobian_times(size: int, k: int, batch: int, repeats: int, hidden=(32, 32), torch_threads: int | None = None):
    """ms per batch of per-sample decoder Jacobians: ours, generic ``jacfwd``, torch.func (if
    installed, after checking it equals ours); ratios are to ours. ``(rows, max_abs_err)``."""
    kp, kb, kz = jax.random.split(rng.key(1), 3)
    params = scene_models.init_decoder(kp, k, 4, hidden)
    params["background"] = jax.random.uniform(kb, (3,))
    z = jax.random.normal(kz, (batch, 4 * k))
    dims = (k, size, size, "alpha")
    ours = jax.jit(jax.vmap(lambda p, v: scene_models.jacobian(p, v, *dims), (None, 0)))
    generic = jax.jit(jax.vmap(jax.jacfwd(lambda p, v: scene_models.decode(p, v, *dims), 1), (None, 0)))
    j_ours = np.asarray(ours(params, z))
    errs = {"jacfwd": float(np.max(np.abs(np.asarray(generic(params, z)) - j_ours)))}
    fns = {"ours": lambda: common.block(ours(params, z)), "jacfwd": lambda: common.block(generic(params, z))}
    try:
        import torch
    except ImportError:
        torch = None
        print("torch not installed (the bench extra): torch.func row left out")
    if torch is not None:
        from experiments.bench import torch_port

        torch.set_num_threads(torch_threads or len(os.sched_getaffinity(0)))
        tf = torch_port.scene_jacobian_fn(params, *dims)
        zt = torch.from_numpy(np.array(z))

        def run_torch():
            with torch.no_grad():
                return tf(zt)

        errs["torch.func"] = float(np.max(np.abs(run_torch().numpy() - j_ours)))
        fns["torch.func"] = run_torch
    tol = 1e-5 * max(1.0, float(np.max(np.abs(j_ours))))
    bad = {n: e for n, e in errs.items() if not e <= tol}
    if bad:
        raise AssertionError(f"Jacobians differ from scene_models.jacobian by more than {tol:g}: {bad}")
    times = interleaved(fns, repeats)
    rows = []
    for name, ts in times.items():
        rows.append(
            {
                "size": size,
                "K": k,
                "batch": batch,
                "hidden": list(hidden),
                "method": name,
                "ms_per_batch": 1e3 * statistics.median(ts),
                "ms_min": 1e3 * min(ts),
                "ms_max": 1e3 * max(ts),
                "ratio_to_ours": paired_ratio(ts, times["ours"]),
                "max_abs_err": errs.get(name, 0.0),
                "threads": torch.get_num_threads() if name == "torch.func" else None,
                "repeats": repeats,
            }
        )
        r = rows[-1]
        print(
            f"jacobian {size}x{size} K={k} B={batch} {name:10s}: {r['ms_per_batch']:8.2f} ms  x{r['ratio_to_ours']:.2f}"
        )
    return rows


NAMES = {
    "plain": "step, no contrast",
    "contrast": "step + contrast (whole batch)",
    "contrast_subset": "step + contrast (subset)",
}


def table(payload: dict) -> str:
    """The payload as one markdown table (ms per step or per batch, ratio to the row's reference)."""
    rows = [
        [
            f"{r['size']}x{r['size']}",
            NAMES[r["variant"]] + (f" ({r['contrast_scenes']} scenes)" if r["with_contrast"] else ""),
            f"{r['step_ms']:.2f} ms/step",
            f"{r['ratio_to_plain']:.2f}x plain",
        ]
        for r in payload["steps"]
    ]
    rows += [
        [
            f"{r['size']}x{r['size']}",
            {"ours": "Jacobian, slot by slot", "jacfwd": "Jacobian, jax.jacfwd", "torch.func": "Jacobian, torch.func"}[
                r["method"]
            ]
            + (f" ({r['threads']} threads)" if r["threads"] else ""),
            f"{r['ms_per_batch']:.2f} ms/batch",
            f"{r['ratio_to_ours']:.2f}x ours",
        ]
        for r in payload["jacobian"]
    ]
    return report.markdown_table(
        ["image", "what (K = %d, batch %d)" % (payload["K"], payload["batch"]), "time", "ratio"], rows
    )


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 16], help="image side lengths")
    ap.add_argument("--K", type=int, default=2, help="number of objects = slots")
    ap.add_argument("--batch", type=int, default=64, help="minibatch (and Jacobian batch)")
    ap.add_argument("--scan-steps", type=int, default=20, help="training steps per timed scan")
    ap.add_argument("--contrast-batch", type=int, default=16, help="scenes of the subset-contrast variant")
    ap.add_argument("--repeats", type=int, default=7, help="timed rounds (medians reported)")
    ap.add_argument("--torch-threads", type=int, default=None, help="PyTorch threads (default: available cores)")
    ap.add_argument("--out", default="results/bench", help="output folder for scene_step.json and .md")
    args = ap.parse_args(argv)
    steps, jac = [], []
    for size in args.sizes:
        steps += step_times(size, args.K, args.batch, args.scan_steps, args.repeats, args.contrast_batch)
        jac += jacobian_times(size, args.K, args.batch, args.repeats, torch_threads=args.torch_threads)
    payload = {"K": args.K, "batch": args.batch, "steps": steps, "jacobian": jac}
    common.write(args.out, "scene_step", payload)
    md = table(payload)
    report.write_atomic(Path(args.out) / "scene_step.md", md)
    print(md)
    return payload


if __name__ == "__main__":
    main()
