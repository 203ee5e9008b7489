"""The experiment framework: a whole toy experiment in a config class, a groups function and a report."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import framework, sweep
from experiments.framework import setting
from mechind.core import report, rng
from tests.mechind.core.test_runner import _toy_task


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    lrs: tuple[float, ...] = setting((0.05, 0.1), "SGD step sizes")
    seeds: int = setting(2, "number of seeds")
    steps: int = setting(30, "SGD steps")
    mode: str = setting("plain", "a closed set of values", choices=("plain", "fancy"))
    width: int | None = setting(None, "an optional number")
    chunk_steps: int = setting(10, "steps per chunk")

    def __post_init__(self):
        if min(self.lrs) <= 0:
            raise ValueError(f"--lrs must be > 0, got {self.lrs}")


def toy_groups(c: ToyConfig) -> list[sweep.Group]:
    runs = [{"lr": lr, "seed": s} for lr in c.lrs for s in range(c.seeds)]
    return [
        sweep.Group(
            key={"toy": dataclasses.asdict(c) | {"chunk_steps": None}},
            make_task=lambda: _toy_task(c.steps),
            keys=rng.seed_keys([r["seed"] for r in runs]),
            hparams={"lr": jnp.asarray([r["lr"] for r in runs], jnp.float32)},
            runs=runs,
            finish=lambda m: {"err": float(m["err"])},
        )
    ]


def toy_report(records, c, out, info) -> str:
    md, _ = sweep.mean_std_table(records, ("lr",), "steps", "err")
    report.write_atomic(out / "table.md", md)
    return f"# toy ({info['preset']})\n\n{md}"


TOY = framework.Experiment(
    "toy",
    "A toy experiment",
    "toy doc",
    ToyConfig,
    {"quick": ToyConfig(), "paper": ToyConfig(steps=60)},
    toy_groups,
    toy_report,
)


def test_the_command_line_is_derived_from_the_config(capsys):
    with pytest.raises(SystemExit):
        TOY.main(["--help"])
    help_text = capsys.readouterr().out
    for opt in (
        "--lrs",
        "--seeds",
        "--steps",
        "--mode {plain,fancy}",
        "--width",
        "--chunk-steps",
        "SGD step sizes",
        "(default: the preset's)",
        "toy doc",
    ):
        assert opt in help_text
    ap = framework.argparse.ArgumentParser()
    framework.add_config_args(ap, ToyConfig)
    args = ap.parse_args(["--lrs", "0.5", "0.25", "--width", "7"])
    c = framework.config_from_args(args, ToyConfig())
    assert c == ToyConfig(lrs=(0.5, 0.25), width=7)
    assert framework.config_from_args(ap.parse_args([]), ToyConfig(steps=60)).steps == 60  # the preset's value
    assert "lrs (0.05, 0.1), seeds 2" in framework.describe(ToyConfig())


@pytest.mark.parametrize("bad", [["--lrs", "-1"], ["--mode", "odd"], ["--seeds", "two"]])
def test_bad_settings_are_an_argparse_error_before_anything_runs(bad, tmp_path):
    with pytest.raises(SystemExit) as e:
        TOY.main(["--out", str(tmp_path), "--no-progress", *bad])
    assert e.value.code == 2 and not (tmp_path / "results.jsonl").exists()


def test_a_toy_experiment_runs_resumes_and_recomputes_a_changed_setting(tmp_path):
    args = ["--out", str(tmp_path), "--no-progress"]
    out = TOY.main(args)
    assert len(out["records"]) == 4 and "# toy (quick)" in out["markdown"]
    assert all(r["err"] < 1.0 and r["experiment"] == "toy" for r in out["records"])
    again = TOY.main(args)  # nothing new trained, the same table
    assert len(report.read_jsonl(tmp_path / "results.jsonl")) == 4 and again["markdown"] == out["markdown"]
    changed = TOY.main(args + ["--steps", "40"])  # a changed setting: its own group, trained anew
    assert len(report.read_jsonl(tmp_path / "results.jsonl")) == 8
    assert {r["steps"] for r in changed["records"]} == {40}
    np.testing.assert_array_less([r["err"] for r in changed["records"]], 1.0)


def test_default_of_reads_the_pipeline_config_and_refuses_unknown_names():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Pipe:
        lr: float = 0.1
        hidden: tuple = dataclasses.field(default_factory=lambda: (8, 8))

    assert framework.default_of(Pipe, "lr") == 0.1 and framework.default_of(Pipe, "hidden") == (8, 8)
    with pytest.raises(AttributeError, match="has no setting 'nope'"):
        framework.default_of(Pipe, "nope")
