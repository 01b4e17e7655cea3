"""Saved runs: a trained interpolant model on disk that any sampler can load in a new process.

A run directory holds

* ``params/`` — the (EMA) parameters, an Orbax pytree checkpoint restorable without a template;
* ``run.json`` — the network class (a module of :mod:`genjax.nets`) and its constructor
  fields, the interpolant preset (a name of :mod:`genjax.interpolants`) and the keyword
  arguments it was built with, the prediction, the per-sample event shape and the
  experiment's config.

``save_run`` writes ``params/`` first and ``run.json`` last, so a directory with a
``run.json`` is complete.  ``load_run`` rebuilds the network and interpolant by name, checks
the restored parameters against the network's own initialisation shapes, and returns a
:class:`Run` whose ``model`` is a :class:`genjax.Model` ready for every sampler::

    run = genjax.load_run("runs/quickstart/FM")
    x, stats = genjax.sample_ode(run.model, run.interpolant, key, (1000, *run.event_shape),
                                 prediction=run.prediction)
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import math
from pathlib import Path
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from . import interpolants as _interpolants
from . import nets as _nets
from .interpolants import Interpolant, check_predictions
from .model import Model

__all__ = ["Run", "save_run", "load_run", "RUN_FILE", "PARAMS_DIR"]

RUN_FILE = "run.json"
PARAMS_DIR = "params"
FORMAT = "genjax-run"
VERSION = 1
PRESETS = ("linear", "trig", "vp", "subvp", "ve", "ddpm", "cosine", "bridge")
_SKIP_FIELDS = ("parent", "name")  # Flax linen bookkeeping, not constructor arguments


@dataclasses.dataclass(frozen=True)
class Run:
    """A loaded run.

    Attributes:
      model: ``genjax.Model(net.apply, params)``, the per-sample ``fn(t, x)``.
      interpolant: the interpolant the model was trained on.
      prediction: what the model predicts (``velocity | noise | data | score``).
      config: the experiment's config as saved (a dict).
      event_shape: the per-sample shape, e.g. ``(2,)``.
      net: the rebuilt network module; ``model.params`` are its parameters.
      interpolant_spec: ``{"preset": name, "params": {...}}`` as saved.
    """

    model: Model
    interpolant: Interpolant
    prediction: str | tuple[str, ...]
    config: dict
    event_shape: tuple[int, ...]
    net: Any = None
    interpolant_spec: dict | None = None


# -- encoding ---------------------------------------------------------------------------
def _encode_value(name: str, value: Any) -> Any:
    """A JSON value for one constructor field; callables by name (``{"callable": "flax.linen.silu"}``)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"save_run: net field {name}={value!r} is not finite")
        return value
    if isinstance(value, (tuple, list)):
        return [_encode_value(name, v) for v in value]
    if callable(value) and hasattr(value, "__name__"):
        if getattr(nn, value.__name__, None) is value:
            return {"callable": f"flax.linen.{value.__name__}"}
        module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", "")
        if module and "<" not in qualname and _resolve_callable(f"{module}.{qualname}", strict=False) is value:
            return {"callable": f"{module}.{qualname}"}
    raise ValueError(f"save_run: net field {name}={value!r:.80} cannot be recorded in run.json "
                     "(use numbers, strings, tuples or importable functions)")


def _resolve_callable(path: str, strict: bool = True):
    module, _, attr = path.rpartition(".")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj
    except (ImportError, AttributeError, ValueError):
        if strict:
            raise ValueError(f"cannot resolve the callable {path!r}") from None
        return None


def _decode_value(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_decode_value(v) for v in value)
    if isinstance(value, dict):
        if set(value) != {"callable"}:
            raise ValueError(f"unexpected net field value {value!r}")
        return _resolve_callable(value["callable"])
    return value


def _net_spec(net) -> dict:
    cls = type(net)
    if not (isinstance(net, nn.Module) and dataclasses.is_dataclass(net)):
        raise ValueError(f"save_run: net must be a Flax linen module from genjax.nets, got {cls.__name__}")
    if getattr(_nets, cls.__name__, None) is not cls:
        raise ValueError(f"save_run: net class {cls.__name__} is not in genjax.nets (load_run resolves it by name)")
    fields = {f.name: _encode_value(f.name, getattr(net, f.name))
              for f in dataclasses.fields(net) if f.init and f.name not in _SKIP_FIELDS}
    return {"class": cls.__name__, "fields": fields}


def _interpolant_spec(interpolant) -> dict:
    """``{"preset", "params"}`` from a preset name, a ``(name, kwargs)`` pair or a default preset object."""
    if isinstance(interpolant, str):
        name, params = interpolant, {}
    elif isinstance(interpolant, (tuple, list)) and len(interpolant) == 2 and isinstance(interpolant[0], str):
        name, params = interpolant[0], dict(interpolant[1])
    elif isinstance(interpolant, Interpolant):
        name, params = interpolant.name, {}
        if name not in PRESETS or not _same_schedule(interpolant, getattr(_interpolants, name)):
            raise ValueError(
                f"save_run: interpolant {name!r} is not a default preset of genjax.interpolants; pass "
                "interpolant=(preset_name, keyword_arguments), e.g. ('vp', {'beta_max': 10.0})")
    else:
        raise ValueError(f"save_run: interpolant must be a preset name, (name, kwargs) or a preset, got {interpolant!r:.80}")
    if name not in PRESETS:
        raise ValueError(f"save_run: unknown interpolant preset {name!r}; expected one of {PRESETS}")
    params = {str(k): _encode_value(k, v) for k, v in params.items()}
    _build_interpolant({"preset": name, "params": params}, where="save_run")  # fails now, not at load time
    return {"preset": name, "params": params}


def _same_schedule(a: Interpolant, b: Interpolant) -> bool:
    if (a.t_min, a.t_max, a.num_steps, a.two_sided) != (b.t_min, b.t_max, b.num_steps, b.two_sided):
        return False
    ts = jnp.linspace(a.t_min, a.t_max, 17)
    return all(bool(jnp.allclose(jax.vmap(getattr(a, f))(ts), jax.vmap(getattr(b, f))(ts), rtol=1e-6, atol=1e-7))
               for f in ("alpha", "beta", "gamma"))


def _build_interpolant(spec: Mapping, where: str) -> Interpolant:
    name, params = spec.get("preset"), spec.get("params", {})
    if name not in PRESETS or not isinstance(params, dict):
        raise ValueError(f"{where}: interpolant {spec!r} must name a preset of {PRESETS} with a dict of params")
    preset = getattr(_interpolants, name)
    try:
        return preset(**{k: _decode_value(v) for k, v in params.items()}) if params else preset
    except TypeError as err:
        raise ValueError(f"{where}: interpolant preset {name!r} rejected params {params}: {err}") from None


def _jsonable(value: Any) -> Any:
    from .report import to_jsonable  # imported here: report pulls in tyro, which `import genjax` does not need

    return to_jsonable(value)


# -- save / load ---------------------------------------------------------------------------
def _check_prediction(prediction, interpolant: Interpolant, where: str):
    """A prediction name, or (two-sided) a tuple of names for a multi-head net; a ``ValueError`` names the problem."""
    if isinstance(prediction, list):
        prediction = tuple(prediction)
    try:
        check_predictions(prediction, interpolant)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    return prediction


def save_run(run_dir, *, net, params, interpolant, prediction, config: Any, event_shape) -> Path:
    """Write ``params`` (Orbax) and ``run.json`` to ``run_dir`` (created; an existing run is replaced).

    Args:
      net: the Flax linen module (a class of :mod:`genjax.nets`, e.g. ``TimeMLP(...)``); its
        class name and constructor fields are recorded.
      params: its parameters (usually ``state.ema_params``).
      interpolant: the preset the model was trained on: a name (``"linear"``), a default
        preset object (``interpolants.linear``) or ``(name, kwargs)`` for a re-parameterised
        one, e.g. ``("ve", {"sigma_min": 0.01, "sigma_max": 10.95})``.
      prediction: ``velocity | noise | data | score``, or for a two-sided preset (``bridge``) a tuple
        of them for a multi-head net (e.g. ``TimeMLP(heads=2)`` with ``("velocity", "noise")``).
      config: the experiment's config (a dataclass or a dict; stored as JSON).
      event_shape: the per-sample shape, e.g. ``(2,)``.
    Returns the run directory.
    """
    spec = _interpolant_spec(interpolant)
    prediction = _check_prediction(prediction, _build_interpolant(spec, "save_run"), "save_run")
    event_shape = tuple(int(s) for s in np.atleast_1d(event_shape))
    if not event_shape or any(s < 1 for s in event_shape):
        raise ValueError(f"save_run: event_shape must be a non-empty shape of positive sizes, got {event_shape}")
    record = {
        "format": FORMAT,
        "version": VERSION,
        "net": _net_spec(net),
        "interpolant": spec,
        "prediction": prediction if isinstance(prediction, str) else list(prediction),
        "event_shape": list(event_shape),
        "params": PARAMS_DIR,
        "config": _jsonable(config),
    }
    leaves = jax.tree.leaves(params)
    if not leaves or not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves):
        raise ValueError("save_run: params must be a non-empty pytree of finite arrays")
    _check_params(net, params, event_shape, where="save_run")
    run_dir = Path(run_dir).expanduser().resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_FILE).unlink(missing_ok=True)  # incomplete until run.json is written again
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(run_dir / PARAMS_DIR, jax.device_get(params), force=True)
    checkpointer.wait_until_finished()
    (run_dir / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return run_dir


@functools.lru_cache(maxsize=32)
def _net(class_name: str, fields: tuple):
    """One module instance per (class, fields): loading twice reuses its ``apply`` (and compiled samplers)."""
    cls = getattr(_nets, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"unknown network class {class_name!r}: not a Flax module of genjax.nets")
    return cls(**dict(fields))


def _check_params(net, params, event_shape, where: str) -> None:
    """Raise ``ValueError`` unless ``params`` has the tree structure and shapes of ``net.init``."""
    try:
        expected = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros(()), jnp.zeros(event_shape))
    except Exception as err:
        raise ValueError(f"{where}: cannot initialise {type(net).__name__} for event shape {event_shape}: {err}") from err
    got = jax.tree.map(lambda a: (tuple(np.shape(a)), str(jnp.result_type(a))), params)
    want = jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), expected)
    if jax.tree.structure(got) != jax.tree.structure(want) or jax.tree.leaves(got) != jax.tree.leaves(want):
        raise ValueError(f"{where}: params do not match {type(net).__name__} with event shape {event_shape} "
                         "(different layers or shapes)")


def load_run(run_dir) -> Run:
    """Load a run written by :func:`save_run`.

    Raises ``FileNotFoundError`` if ``run_dir``, its ``run.json`` or its ``params/`` is missing,
    and ``ValueError`` naming the problem if ``run.json`` is malformed (bad JSON, unknown
    network class or preset, unknown prediction) or the parameters do not fit the network.
    """
    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise FileNotFoundError(f"load_run: run directory {str(run_dir)!r} does not exist")
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"load_run: {str(path)!r} is missing: not a saved run (or an incomplete save)")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"load_run: {str(path)!r} is not valid JSON: {err}") from None
    where = f"load_run({str(run_dir)!r})"
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{where}: {RUN_FILE} is not a genjax run file (no \"format\": \"{FORMAT}\")")
    if record.get("version") != VERSION:
        raise ValueError(f"{where}: unsupported run file version {record.get('version')!r} (expected {VERSION})")
    missing = [k for k in ("net", "interpolant", "prediction", "event_shape", "config") if k not in record]
    if missing:
        raise ValueError(f"{where}: {RUN_FILE} lacks {missing}")
    net_spec = record["net"]
    try:
        fields = tuple(sorted((str(k), _decode_value(v)) for k, v in net_spec["fields"].items()))
        net = _net(str(net_spec["class"]), fields)
        event_shape = tuple(int(s) for s in record["event_shape"])
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{where}: malformed net or event_shape in {RUN_FILE}: {err!r}") from None
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    interpolant = _build_interpolant(record["interpolant"], where)
    prediction = _check_prediction(record["prediction"], interpolant, where)
    params_dir = run_dir / record.get("params", PARAMS_DIR)
    if not params_dir.is_dir():
        raise FileNotFoundError(f"{where}: the parameter checkpoint {str(params_dir)!r} is missing")
    try:
        params = ocp.StandardCheckpointer().restore(params_dir)
    except Exception as err:
        raise ValueError(f"{where}: cannot restore the parameters from {str(params_dir)!r}: {err}") from err
    _check_params(net, params, event_shape, where)
    return Run(Model(net.apply, params), interpolant, prediction, record["config"], event_shape, net,
               record["interpolant"])
