"""Regenerate docs/figures: run each experiment with its defaults and copy its PNGs under the README's names.

Each experiment runs in its own process (``python experiments/<name>.py --out runs/<name>``) and
writes ``runs/<name>/results.json`` as usual; its figures are then copied into ``docs/figures/``.
With every experiment this takes about 85 minutes on an idle 2-core CPU (most of it ``bridges``, ``few_step``,
``likelihood_zoo``, ``score_matching``, ``flows_2d`` and ``ncsn_2d``); ``--experiments`` picks some,
``--copy-only`` copies the figures of earlier runs without running anything.

    make figures                                                 # all experiments
    make figures ARGS="--experiments quickstart langevin"
    python experiments/make_figures.py --copy-only
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1]

# experiment -> {PNG it writes into runs/<experiment>/: name under docs/figures/}
FIGURES = {
    "quickstart": {"samples.png": "quickstart_samples.png"},
    "mle_trinity": {"mle_trinity.png": "mle_trinity.png"},
    "mode_covering": {"mode_covering.png": "mode_covering.png"},
    "estimators_1d": {"estimators_1d.png": "estimators_1d.png"},
    "langevin": {"langevin_mixture.png": "langevin_mixture.png"},
    "anomaly_detection": {"anomaly.png": "anomaly.png"},
    "flows_digits": {"samples.png": "flows_digits_samples.png"},
    "ncsn_2d": {"ncsn_samples.png": "ncsn_samples.png"},
    "score_matching": {"score_fields_2d.png": "score_fields_2d.png",
                       "score_matching_vs_dim.png": "score_matching_vs_dim.png"},
    "flows_2d": {"density.png": "flows_2d_density.png"},
    "digits": {"samples.png": "digits_samples.png", "guidance_sweep.png": "digits_guidance_sweep.png"},
    "patches": {"samples.png": "patches_samples.png"},
    "bridges": {"trajectories.png": "bridges_trajectories.png", "nfe.png": "bridges_nfe.png"},
    "few_step": {"frontier.png": "few_step_frontier.png", "samples.png": "few_step_samples.png"},
    "likelihood_zoo": {"samples.png": "likelihood_zoo_samples.png"},
    "gans_2d": {"samples.png": "gans_2d_samples.png"},
    "gradient_flows": {"gradient_flows_kl_w2.png": "gradient_flows_kl_w2.png"},
    "langevin_theory": {"langevin_theory_bias_kappa.png": "langevin_theory_bias_kappa.png"},
    "jepa_toy": {f"jepa_{s}_{k}.png": f"jepa_{s}_{k}.png" for s in ("linear", "sprite") for k in ("training", "horizon")},
    "classical_studies": {n: f"classical_{n}" for n in ("map_mle.png", "label_switching.png", "sanov.png",
                                                          "inception_score.png", "moons_density.png")},
}
Experiment = Literal["quickstart", "mle_trinity", "mode_covering", "estimators_1d", "langevin", "anomaly_detection",
                     "flows_digits", "ncsn_2d", "score_matching", "flows_2d", "digits", "patches", "bridges",
                     "few_step", "likelihood_zoo", "gans_2d", "gradient_flows", "langevin_theory", "jepa_toy",
                     "classical_studies"]


@dataclasses.dataclass(frozen=True)
class Config:
    experiments: tuple[Experiment, ...] = tuple(FIGURES)
    """Experiments to run (each with its defaults), quickest first."""
    copy_only: bool = False
    """Copy the figures of earlier runs from runs/<experiment>/ without running anything."""
    runs: str = "runs"
    """Folder of the experiments' outputs (runs/<experiment>/)."""
    dest: str = "docs/figures"
    """Where the figures go."""

    def __post_init__(self):
        unknown = [e for e in self.experiments if e not in FIGURES]
        if not self.experiments or unknown:
            raise ValueError(f"--experiments {' '.join(self.experiments)}: expected one or more of {list(FIGURES)}")


def run(name: str, out: Path) -> float:
    """Run ``experiments/<name>.py --out <out>`` in a new process; returns its wall time in seconds."""
    tic = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "experiments" / f"{name}.py"), "--out", str(out)], cwd=ROOT,
                   check=True)
    return time.perf_counter() - tic


def main(cfg: Config) -> None:
    dest = ROOT / cfg.dest
    dest.mkdir(parents=True, exist_ok=True)
    times = {}
    for name in cfg.experiments:
        out = ROOT / cfg.runs / name
        if not cfg.copy_only:
            print(f"\n=== {name}", flush=True)
            times[name] = run(name, out)
        for source, target in FIGURES[name].items():
            path = out / source
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: run experiments/{name}.py first (or drop --copy-only)")
            shutil.copyfile(path, dest / target)
            print(f"{path.relative_to(ROOT)} -> {(dest / target).relative_to(ROOT)}")
    for name, seconds in times.items():
        print(f"{name}: {seconds:.0f} s")


if __name__ == "__main__":
    from genjax import report

    main(report.cli(Config, __doc__))
