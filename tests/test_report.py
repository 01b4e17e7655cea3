"""genjax.report: the tyro command line of experiments, results.json, and sample metrics against the data floor."""

import dataclasses
import json
import math
from typing import Literal

import jax
import numpy as np
import pytest

from genjax import metrics, report, targets


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    dataset: Literal["moons", "checkerboard"] = "moons"
    """Toy data set."""
    steps: int = 4000
    """Training steps."""
    sizes: tuple[int, ...] = (100, 1000)
    """Sample sizes."""
    ema: bool = True
    """Use EMA weights."""

    def __post_init__(self):
        report.check_positive(self, "steps", "sizes")


def test_cli_builds_the_frozen_config_from_flags():
    cfg = report.cli(Config, "test", args=["--steps", "7", "--dataset", "checkerboard", "--sizes", "3", "5",
                                           "--no-ema", "--seed", "11", "--out", "somewhere"])
    assert cfg == Config(seed=11, out="somewhere", dataset="checkerboard", steps=7, sizes=(3, 5), ema=False)
    assert report.cli(Config, args=[]) == Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.steps = 1


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps must be positive, got 0"),
    (["--sizes", "10", "-1"], "--sizes must be a non-empty list of positive values"),
    (["--dataset", "spirals"], "spirals"),
    (["--stepz", "3"], "stepz"),
])
def test_cli_rejects_bad_flags_with_a_usage_error(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report.cli(Config, "test", args=args)
    assert exit_info.value.code == 2
    err = capsys.readouterr()
    assert message in " ".join((err.err + err.out).split())


def test_help_shows_defaults_choices_and_field_docs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        report.cli(Config, "A test experiment.", args=["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for piece in ("A test experiment.", "--steps INT", "Training steps. (default: 4000)", "{moons,checkerboard}",
                  "--seed INT", "PRNG seed", "--ema, --no-ema", "(default: 100 1000)"):
        assert piece in text, piece


def test_config_checks_also_apply_without_the_command_line():
    with pytest.raises(ValueError, match="--steps must be positive"):
        Config(steps=-3)
    with pytest.raises(ValueError, match="dataclass type"):
        report.cli(Config(), args=[])


def test_write_results_records_the_resolved_config_and_seed(tmp_path):
    cfg = report.cli(Config, args=["--seed", "5", "--sizes", "2"])
    path = report.write_results(tmp_path, config=cfg, metrics={"x": np.float32(1.5), "bad": math.inf})
    payload = json.loads(path.read_text())
    assert payload["seed"] == 5
    assert payload["config"] == {"seed": 5, "out": None, "dataset": "moons", "steps": 4000, "sizes": [2], "ema": True}
    assert payload["metrics"] == {"x": 1.5, "bad": None}


N = 400
DATA = targets.gaussian([0.0, 0.0], [1.0, 1.0])  # N(0, I₂): H = log 2π + 1


def test_evaluator_puts_the_cross_entropy_of_diffuse_samples_beside_the_data_floor():
    """Model samples N(0, 1.5² I₂): E_q[−log p] = log 2π + 1.5²/2·2 = log 2π + 2.25, against H(p) = log 2π + 1."""
    evaluate = report.evaluator(DATA.sample, jax.random.key(0), N, {"energy": metrics.energy_distance}, repeats=3,
                                log_prob=DATA.log_prob, entropy=float(DATA.entropy()))
    assert evaluate.reference.shape == (N, 2)
    floor_mean, floor_sd = evaluate.floors["energy"]
    assert abs(floor_mean) < 0.02 and 0 < floor_sd < 0.02
    entropy = math.log(2 * math.pi) + 1.0
    ce_mean, ce_sd = evaluate.cross_entropy_floor
    assert abs(ce_mean - entropy) < 0.15 and 0 < ce_sd < 0.15  # per-point sd 1, 400 points: s.e. 0.05

    diffuse = 1.5 * jax.random.normal(jax.random.key(1), (N, 2))
    row = evaluate(diffuse)
    expected = math.log(2 * math.pi) + 1.5**2
    assert abs(row["cross_entropy"] - expected) < 4 * row["cross_entropy_se"]
    assert 0.07 < row["cross_entropy_se"] < 0.16  # per-point sd 2.25
    assert row["cross_entropy"] - entropy > 8 * row["cross_entropy_se"]  # far above the data's
    assert row["off_support"] == 0.0
    assert row["energy"] == pytest.approx(float(metrics.energy_distance(diffuse, evaluate.reference)))
    assert row["cross-entropy"] == report.plus_minus(row["cross_entropy"], row["cross_entropy_se"])

    floor = evaluate.floor_row()
    assert floor["energy"] == report.plus_minus(floor_mean, floor_sd)
    assert floor["cross-entropy"] == report.plus_minus(ce_mean, ce_sd)
    assert evaluate.summary()["entropy"] == pytest.approx(entropy, rel=1e-6)


def test_evaluator_without_a_density_reports_only_the_metrics():
    evaluate = report.evaluator(DATA.sample, jax.random.key(0), N, {"energy": metrics.energy_distance}, repeats=2)
    row = evaluate(DATA.sample(jax.random.key(3), N))
    assert set(row) == {"energy"} and "cross-entropy" not in evaluate.floor_row()
    with pytest.raises(ValueError, match="at least one metric"):
        report.evaluator(DATA.sample, jax.random.key(0), N, {})


def test_evaluator_counts_samples_off_the_support():
    """A density that is zero for x₀ > 1: the cross-entropy is infinite and off_support says how often."""
    def log_prob(x):
        return jax.numpy.where(x[0] > 1.0, -jax.numpy.inf, DATA.log_prob(x))

    evaluate = report.evaluator(lambda key, n: -jax.numpy.abs(DATA.sample(key, n)), jax.random.key(0), N,
                                {"energy": metrics.energy_distance}, repeats=2, log_prob=log_prob)
    x = np.asarray(DATA.sample(jax.random.key(4), N))
    row = evaluate(x)
    assert row["cross_entropy"] == math.inf and row["cross-entropy"] == "inf"
    assert row["off_support"] == pytest.approx(np.mean(x[:, 0] > 1.0)) and row["off_support"] > 0.1


def test_plus_minus_rounds_to_the_spread():
    assert report.plus_minus(2.83521, 0.0236) == "2.835 ± 0.024"
    assert report.plus_minus(0.2526, 0.0439) == "0.253 ± 0.044"
    assert report.plus_minus(-0.00070, 0.00156) == "-0.0007 ± 0.0016"
    assert report.plus_minus(1.23456, 0.0) == "1.235"
    assert report.plus_minus(math.inf, math.inf) == "inf"
    assert report.plus_minus(None, 1.0) is None
