"""Run every benchmark and write ``<out>/summary.md`` (README's Performance table).

    pip install -e '.[bench]' && python -m experiments.bench [--out results/bench] [--fast]

Each benchmark is also a module (``python -m experiments.bench.<name> --help``) writing
its own JSON; every comparison is measured side by side in the same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from experiments.bench import common, derivatives, scene_step, seeds, step
from experiments.bench import slice as slice_bench
from mechind.core import report


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/bench", help="output folder")
    ap.add_argument("--fast", action="store_true", help="fewer repeats and steps (a smoke run)")
    args = ap.parse_args(argv)
    o = ["--out", args.out]
    fast = args.fast
    t0 = time.perf_counter()
    der = derivatives.main(o + (["--repeats", "2"] if fast else []))
    stp = step.main(
        o
        + (
            ["--repeats", "2", "--run-steps", "300", "--seeds", "2", "--scan-steps", "200", "--torch-steps", "20"]
            if fast
            else []
        )
    )
    sd = seeds.main(o + (["--S", "1", "5", "--steps", "50", "--repeats", "1"] if fast else []))
    sl = slice_bench.main(o + (["--steps", "100", "--Ks", "2"] if fast else []))
    sc = scene_step.main(o + (["--sizes", "16", "--scan-steps", "5", "--repeats", "2"] if fast else []))
    m = common.machine()
    lines = [
        f"Measured on {m['device_kind']} ({m['backend']}, {m['cpu_count']} cores), jax {m['jax']}, "
        f"torch {m.get('torch', '-')} ({m.get('torch_threads', '-')} threads); medians of repeats; "
        f"`python -m experiments.bench` ({time.perf_counter() - t0:.0f}s).",
        "",
    ]
    lines.append("Training step, slot autoencoder (K = %d, batch 64, Brady et al.'s MLPs):\n" % stp["steps"][0]["K"])
    lines.append(
        report.markdown_table(
            ["λ", "JAX ms/step", "PyTorch ms/step", "speed-up"],
            [
                [r["lam"], f"{r['jax_step_ms']:.3f}", f"{r['torch_step_ms']:.2f}", f"{r['speedup']:.1f}x"]
                for r in stp["steps"]
            ],
        )
    )
    w = stp["whole_run"]
    lines.append(
        f"\nWhole run ({w['steps']} steps, λ = {w['lam']:g}, identical data): "
        f"JAX {w['jax_one_run_train_s']:.1f}s "
        f"(+{w['jax_one_run_compile_s']:.1f}s compile), PyTorch {w['torch_one_run_train_s']:.1f}s; "
        f"{w['seeds']} seeds vmapped {w['jax_all_seeds_vmapped_train_s']:.1f}s vs sequential PyTorch "
        f"{w['torch_all_seeds_sequential_s']:.1f}s. Fidelity: SIS JAX {w['jax_sis_mean']:.3f} ± "
        f"{w['jax_sis_std']:.3f}, PyTorch {w['torch_sis_mean']:.3f} ± {w['torch_sis_std']:.3f} "
        f"({'within' if w['within_seed_spread'] else 'NOT within'} the seed spread).\n"
    )
    lines.append("Per-sample derivatives (batch %d):\n" % der["rows"][0]["batch"])
    lines.append(
        report.markdown_table(
            ["what", "d_z", "hidden", "d_x", "JAX samples/s", "torch.func samples/s", "speed-up"],
            [
                [
                    r["what"],
                    r["d_z"],
                    r["hidden"],
                    r["d_x"],
                    f"{r['jax_samples_per_s']:.0f}",
                    f"{r['torch_samples_per_s']:.0f}",
                    f"{r['speedup']:.1f}x",
                ]
                for r in der["rows"]
            ],
        )
    )
    lines.append(f"\nSeeds (K = {sd['K']}, λ = 1, {sd['steps']} steps):\n")
    lines.append(
        report.markdown_table(
            [
                "S",
                "one program (s)",
                "runner default (s)",
                "S sequential (s)",
                "one program / sequential",
                "runner / sequential",
            ],
            [
                [
                    r["S"],
                    f"{r['vmapped_s']:.2f}",
                    f"{r['runner_s']:.2f}",
                    f"{r['sequential_s']:.2f}",
                    f"{r['ratio_vmapped_over_sequential']:.2f}",
                    f"{r['ratio_runner_over_sequential']:.2f}",
                ]
                for r in sd["rows"]
            ],
        )
    )
    lines.append("\nExperiment slice (15 runs: 3 λ x 5 seeds, 72k/8k samples):\n")
    lines.append(
        report.markdown_table(
            [
                "K",
                "compile s",
                "steps",
                "train s",
                "ms/step (15 runs)",
                "eval s (SIS, 8k)",
                "paper slice (min, extrapolated)",
            ],
            [
                [
                    r["K"],
                    f"{r['compile_s']:.1f}",
                    r["steps"],
                    f"{r['train_s']:.1f}",
                    f"{r['group_step_ms']:.2f}",
                    f"{r['eval_s']:.1f}",
                    f"{r['paper_slice_total_s'] / 60:.1f}",
                ]
                for r in sl["rows"]
            ],
        )
    )
    lines.append(
        f"\nPaper grid on this device, extrapolated: {sl['paper_grid_extrapolated_s'] / 3600:.2f} h ({sl['note']}).\n"
    )
    lines.append("\nImage decoder (scene slot autoencoder): the step with the contrast against the step without, and")
    lines.append("the decoder Jacobian against jax.jacfwd and torch.func.jacfwd (same weights):\n")
    lines.append(scene_step.table(sc))
    path = report.write_atomic(Path(args.out) / "summary.md", "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
