"""Helpers that experiment scripts share: output folder, results.json, tables, CLI flags.

Every experiment writes ``runs/<script name>/results.json`` (config, seed, versions,
device, metrics) and PNG figures next to it; ``--out`` overrides the folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import jax
import numpy as np

__all__ = ["experiment_parser", "parse_config", "output_dir", "environment", "write_results", "markdown_table", "to_jsonable"]

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "diffrax", "orbax-checkpoint", "numpy", "scipy")


def experiment_parser(description: str, **defaults: Any) -> argparse.ArgumentParser:
    """An ``argparse`` parser with the shared flags ``--seed`` and ``--out``.

    Scripts add their own flags; ``defaults`` may override the seed default.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seed", type=int, default=defaults.get("seed", 0), help="PRNG seed")
    parser.add_argument("--out", type=str, default=None, help="output folder (default runs/<script name>)")
    return parser


def parse_config(config_cls, description: str, argv=None):
    """Parse ``--seed``, ``--out`` and one ``--flag`` per field of the frozen dataclass ``config_cls``.

    Returns ``(config, args)``; flag names are the field names with ``-`` for ``_``, typed by
    the field defaults (booleans as ``--flag/--no-flag``, tuples as several values).
    """
    parser = experiment_parser(description)
    fields = dataclasses.fields(config_cls)
    for field in fields:
        flag, kind = "--" + field.name.replace("_", "-"), type(field.default)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        elif kind is tuple:  # a tuple default takes several values of its first element's type
            parser.add_argument(flag, type=type(field.default[0]), nargs="+", default=field.default)
        else:
            parser.add_argument(flag, type=kind, default=field.default)
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return config_cls(**values), args


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


def write_results(directory: Path, *, config: Any, seed: int, metrics: Any, name: str | None = None) -> Path:
    """Write ``results.json`` = {name, date, seed, config, environment, metrics}; return its path."""
    payload = {
        "name": name or Path(directory).name,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
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
