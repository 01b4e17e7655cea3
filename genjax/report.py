"""Helpers that experiment scripts share: command line, output folder, results.json, tables, data floors.

Every experiment and benchmark declares a frozen dataclass config deriving from
:class:`RunConfig` (``seed``, ``out``) and reads it with :func:`cli` (tyro): every field is a
flag, ``--help`` shows defaults, choices and the field docstrings, and ``__post_init__``
checks reject bad values with a usage error before any work starts.  Each run writes
``runs/<script name>/results.json`` (the resolved config, seed, versions, device, metrics)
and PNG figures next to it; ``--out`` overrides the folder.

Sample quality is reported against the data's own floor with :func:`evaluator`: the same
metric between two independent data samples of the same size, and, where the data density
is known, the cross-entropy of the samples under it beside the data's entropy.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

import jax
import numpy as np
import tyro

from . import metrics as _metrics

__all__ = [
    "RunConfig",
    "cli",
    "check_positive",
    "check_nonnegative",
    "output_dir",
    "environment",
    "write_results",
    "markdown_table",
    "to_jsonable",
    "plus_minus",
    "Evaluator",
    "evaluator",
]

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "diffrax", "orbax-checkpoint", "numpy", "scipy", "tyro")

C = TypeVar("C")


# -- command line ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Fields every experiment and benchmark config has (derive configs from this class)."""

    seed: int = 0
    """PRNG seed: the same seed gives the same numbers."""
    out: str | None = None
    """Output folder (default: runs/<script name>)."""


def cli(config_cls: type[C], description: str | None = None, args: Sequence[str] | None = None) -> C:
    """Build ``config_cls`` (a frozen dataclass) from the command line with tyro.

    One ``--flag`` per field (``--batch-size`` for ``batch_size``; booleans as
    ``--flag/--no-flag``; tuples take several values; ``Literal[...]`` fields list their
    choices); ``--help`` shows each default and the field's docstring or trailing comment.
    A ``ValueError`` from the config's ``__post_init__`` becomes a usage error (exit code 2)
    that prints its message, before any work starts.  ``args`` replaces ``sys.argv[1:]``.
    """
    if not (dataclasses.is_dataclass(config_cls) and isinstance(config_cls, type)):
        raise ValueError(f"cli: config_cls must be a dataclass type, got {config_cls!r}")
    return tyro.cli(config_cls, description=description, args=args)


def _bad(name: str, value: Any, need: str) -> ValueError:
    return ValueError(f"--{name.replace('_', '-')} must be {need}, got {value!r}")


def check_positive(config: Any, *names: str) -> None:
    """Raise ``ValueError`` naming the flag unless each field (or every entry of a tuple field) is > 0."""
    for name in names:
        value = getattr(config, name)
        values = value if isinstance(value, tuple) else (value,)
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
            raise _bad(name, value, "positive" if not isinstance(value, tuple) else "a non-empty list of positive values")


def check_nonnegative(config: Any, *names: str) -> None:
    """Raise ``ValueError`` naming the flag unless each field is >= 0."""
    for name in names:
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0):
            raise _bad(name, value, ">= 0")


# -- results --------------------------------------------------------------------------
def output_dir(script: str, out: str | None = None) -> Path:
    """``runs/<stem of script>`` (or ``out``), created if needed."""
    path = Path(out) if out else Path("runs") / Path(script).stem
    path.mkdir(parents=True, exist_ok=True)
    return path


def environment() -> dict:
    """Python and package versions, and the JAX devices the run used."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    devices = jax.devices()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind,
    }


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, arrays and numpy scalars to JSON types (non-finite floats → None)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (jax.Array, np.ndarray)):
        return to_jsonable(np.asarray(value).tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


def write_results(directory: Path, *, config: Any, metrics: Any, seed: int | None = None,
                  name: str | None = None) -> Path:
    """Write ``results.json`` = {name, date, seed, config, environment, metrics}; return its path.

    ``seed`` defaults to ``config.seed``.
    """
    payload = {
        "name": name or Path(directory).name,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seed": getattr(config, "seed", None) if seed is None else seed,
        "config": to_jsonable(config),
        "environment": environment(),
        "metrics": to_jsonable(metrics),
    }
    path = Path(directory) / "results.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "–"
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            return "–"
        return f"{float(value):.{digits}g}"
    return str(value)


def markdown_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], digits: int = 4) -> str:
    """A GitHub-markdown table of ``rows`` (dicts) restricted to ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c), digits) for c in columns) + " |")
    return "\n".join(lines)


def plus_minus(mean: float | None, spread: float | None, digits: int = 2) -> str | None:
    """``"mean ± spread"`` rounded to ``digits`` significant digits of the spread (``"inf"`` for infinite means)."""
    if mean is None:
        return None
    if not math.isfinite(mean):
        return "inf"
    if spread is None or not math.isfinite(spread) or spread == 0:
        return f"{mean:.4g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(spread))))
    return f"{mean:.{decimals}f} ± {spread:.{decimals}f}"


# -- sample quality against the data floor --------------------------------------------
@dataclasses.dataclass(frozen=True)
class Evaluator:
    """Sample metrics of model samples against held-out data, next to the data's own floor.

    Built once per data set by :func:`evaluator` (the floors do not depend on the model);
    ``evaluator(samples)`` returns one table row.

    Attributes:
      reference: the held-out data sample the model samples are compared to.
      metrics: ``name -> metric(samples, reference)``.
      floors: ``name -> (mean, sd)`` of the metric between two independent data samples of
        the sizes used, over the repeats: what a perfect model scores.
      log_prob: per-point data log-density, or ``None`` when it is unknown.
      entropy: the data's differential entropy ``H(p)`` in nats, or ``None``.
      cross_entropy_floor: ``(mean, sd)`` of the cross-entropy of data samples of the model
        sample size under ``log_prob``, over the repeats (≈ ``entropy``), or ``None``.
    """

    reference: Any
    metrics: Mapping[str, Callable]
    floors: Mapping[str, tuple[float, float]]
    log_prob: Callable | None = None
    entropy: float | None = None
    cross_entropy_floor: tuple[float, float] | None = None

    def __call__(self, samples) -> dict[str, Any]:
        """``{metric: value, ..., "cross_entropy", "cross_entropy_se", "off_support", "cross-entropy"}``.

        ``cross_entropy`` is ``−mean log p_data(x)`` over the samples with its Monte-Carlo
        standard error ``cross_entropy_se`` (:func:`genjax.metrics.cross_entropy`);
        ``off_support`` is the fraction of samples where ``p_data = 0`` (they make the
        cross-entropy infinite, e.g. off the checkerboard); ``"cross-entropy"`` is the
        formatted ``"mean ± s.e."`` for tables.  The cross-entropy keys are present only when
        the data density is known.
        """
        samples = np.asarray(samples)
        row: dict[str, Any] = {name: float(fn(samples, self.reference)) for name, fn in self.metrics.items()}
        if self.log_prob is not None:
            mean, se = _metrics.cross_entropy(self.log_prob, samples)
            off = 0.0
            if math.isinf(mean):  # some samples where p_data = 0: how many
                off = float(np.mean(np.isneginf(np.asarray(jax.jit(jax.vmap(self.log_prob))(samples)))))
            row.update(cross_entropy=mean, cross_entropy_se=se, off_support=off)
            row["cross-entropy"] = plus_minus(mean, se)
        return row

    def floor_row(self, digits: int = 2) -> dict[str, Any]:
        """The data floor as a table row: ``"mean ± sd"`` per metric and for the cross-entropy."""
        row: dict[str, Any] = {name: plus_minus(*self.floors[name], digits) for name in self.metrics}
        if self.cross_entropy_floor is not None:
            row["cross-entropy"] = plus_minus(*self.cross_entropy_floor, digits)
            row["off_support"] = 0.0
        return row

    def summary(self) -> dict[str, Any]:
        """The floors and the entropy for ``results.json``."""
        out: dict[str, Any] = {name: {"mean": m, "sd": s} for name, (m, s) in self.floors.items()}
        if self.cross_entropy_floor is not None:
            out["cross_entropy"] = {"mean": self.cross_entropy_floor[0], "sd": self.cross_entropy_floor[1]}
        out["entropy"] = self.entropy
        return out


def evaluator(sample_fn: Callable, key, n: int, metrics: Mapping[str, Callable], *, repeats: int = 5,
              log_prob: Callable | None = None, entropy: float | None = None) -> Evaluator:
    """An :class:`Evaluator` for data drawn by ``sample_fn(key, n)`` (e.g. ``toy.get(name).sample``).

    Draws the held-out ``reference`` (n points) and computes every metric's floor
    (:func:`genjax.metrics.data_floor`, two independent data samples of n points, ``repeats``
    times) and, with ``log_prob``, the cross-entropy of ``repeats`` data samples of n points.
    For a toy set pass its ``log_prob`` and ``entropy`` (both may be ``None``).
    """
    if not metrics:
        raise ValueError("evaluator: metrics must name at least one metric(samples, reference)")
    if log_prob is not None and not callable(log_prob):
        raise ValueError(f"evaluator: log_prob must be a per-point callable or None, got {log_prob!r:.80}")
    k_ref, k_floor, k_ce = jax.random.split(key, 3)
    reference = np.asarray(sample_fn(k_ref, n))
    floors = {name: _metrics.data_floor(fn, sample_fn, jax.random.fold_in(k_floor, i), n, n, repeats=repeats)
              for i, (name, fn) in enumerate(metrics.items())}
    ce_floor = None
    if log_prob is not None:
        values = [_metrics.cross_entropy(log_prob, sample_fn(k, n))[0] for k in jax.random.split(k_ce, repeats)]
        ce_floor = (float(np.mean(values)), float(np.std(values, ddof=1)))
    return Evaluator(reference, dict(metrics), floors, log_prob, None if entropy is None else float(entropy), ce_floor)
