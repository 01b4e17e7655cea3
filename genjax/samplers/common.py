"""What every sampler shares: argument checks, per-sample inputs, chunked/sharded execution.

The sampler contract (DESIGN.md): ``sample_*(model, interpolant, key, shape=None, *,
prediction, x_init=None, c=None, chunk_size=None, mesh=None, ...) -> (samples, stats)``
with ``stats["nfe"]``.  Each sample draws its randomness from its own key
``split(key, n)[i]``, so the samples do not depend on ``chunk_size`` or on how they are
sharded over devices.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from .. import _checks
from ..interpolants import Interpolant, check_domain
from ..model import check_conditioning, check_output, per_sample

__all__ = ["check_interval", "check_start", "sample_inputs", "map_chunks", "check_samples",
           "prior_draw", "model_field", "check_sampler_args", "check_two_sided_start"]

DATA_AXIS = "data"  # the mesh axis samples are sharded over (genjax.train.parallel.DATA_AXIS)

def check_interval(interpolant: Interpolant, t_start, t_end, *, decreasing: bool) -> tuple[float, float]:
    """Resolve ``t_start`` (default ``t_max``) and ``t_end`` (default ``t_min``) inside ``[t_min, t_max]``."""
    if not isinstance(interpolant, Interpolant):
        raise ValueError(f"interpolant must be a genjax.Interpolant, got {type(interpolant).__name__}")
    lo, hi = interpolant.t_min, interpolant.t_max
    t_start = hi if t_start is None else float(t_start)
    t_end = lo if t_end is None else float(t_end)
    for name, value in (("t_start", t_start), ("t_end", t_end)):
        if not lo <= value <= hi:
            raise ValueError(
                f"{name}={value} must lie in [t_min, t_max] = [{lo}, {hi}] of interpolant {interpolant.name!r}"
            )
    if t_start == t_end or (decreasing and t_end > t_start):
        want = "t_end < t_start" if decreasing else "t_end != t_start"
        raise ValueError(f"need {want}, got t_start={t_start}, t_end={t_end}")
    return t_start, t_end


def check_start(key, shape, x_init) -> tuple[tuple[int, ...], jax.Array | None]:
    """Validate ``(key, shape)`` or ``x_init``; returns ``(shape, x_init)``."""
    if x_init is not None:
        x_init = _checks.float_batch(x_init, "x_init")
        if shape is not None and _checks.check_shape(shape) != x_init.shape:
            raise ValueError(f"shape={tuple(shape)} does not match x_init.shape={x_init.shape}")
        return x_init.shape, x_init
    if key is None:
        raise ValueError("key is required to draw the initial state from the prior (or pass x_init)")
    if shape is None:
        raise ValueError("shape=(n, *event_shape) is required when x_init is not given")
    return _checks.check_shape(shape), None


def check_sampler_args(model, interpolant: Interpolant, prediction, where: str, t_lo: float, t_hi: float,
                       to=("velocity",)):
    """The checks every model-driven sampler makes before any work (``to``: the conversions it uses)."""
    _checks.check_callable(model, "model", "fn(t, x) or fn(t, x, c)")
    check_domain(interpolant, prediction, t_lo, t_hi, to=to, what=where)


def check_two_sided_start(interpolant: Interpolant, x_init, where: str) -> None:
    """A two-sided path has no Gaussian prior to draw from: ``x_init`` is required."""
    if interpolant.two_sided and x_init is None:
        raise ValueError(f"{where}: a two-sided interpolant has no Gaussian prior to draw from: pass x_init (samples "
                         "of ρ1 to run backward from t_max, of ρ0 to run forward from t_min)")


def sample_inputs(key, shape, x_init, c):
    """Per-sample inputs ``(keys, x_init, c)``, each with the leading axis ``n``."""
    n = shape[0]
    keys = jax.random.split(jax.random.key(0) if key is None else key, n)
    return keys, x_init, check_conditioning(c, n)


def prior_draw(key, event_shape, std):
    """One sample of ``N(0, std² I)`` of the event shape."""
    return std * jax.random.normal(key, event_shape)


def num_heads(prediction) -> int:
    """How many outputs a model predicting ``prediction`` (a name or a tuple of names) returns."""
    return 1 if isinstance(prediction, str) else len(prediction)


def model_field(model, c, event_shape, dtype, where: str, prediction="velocity"):
    """The per-sample model with ``c`` bound, after checking its output once per trace."""
    heads = num_heads(prediction)
    x_spec = jax.ShapeDtypeStruct(tuple(event_shape), dtype)
    check_output(model, jnp.zeros((), jnp.result_type(float)), x_spec, c, where=where, heads=heads)
    return per_sample(model, c)


def _pad(tree, size: int):
    def pad(a):
        extra = size - a.shape[0]
        return a if extra == 0 else jnp.concatenate([a, jnp.repeat(a[:1], extra, axis=0)])

    return jax.tree.map(pad, tree)


def map_chunks(fn, inputs, *, chunk_size=None, mesh=None):
    """``fn(inputs)`` in chunks of ``chunk_size`` rows (bounded memory), optionally sharded over ``mesh``.

    ``inputs`` is a pytree of arrays sharing the leading axis ``n``; ``fn`` maps a chunk to a
    pytree of per-row outputs.  Every chunk has the same shape (the last is padded), so ``fn``
    compiles once; with ``mesh`` each chunk is placed with ``NamedSharding(mesh, P("data"))``
    and its size rounded up to a multiple of the ``"data"`` axis.  A single chunk stays on the
    device; several are gathered to the host one by one and returned as NumPy arrays.
    """
    n = jax.tree.leaves(inputs)[0].shape[0]
    size = n if chunk_size is None else min(_checks.check_positive_int(chunk_size, "chunk_size"), n)
    sharding = None
    if mesh is not None:
        if not isinstance(mesh, jax.sharding.Mesh) or DATA_AXIS not in mesh.axis_names:
            raise ValueError(f"mesh must be a jax.sharding.Mesh with a {DATA_AXIS!r} axis (see "
                             f"genjax.train.data_mesh), got {mesh!r:.80}")
        devices = mesh.shape[DATA_AXIS]
        size = math.ceil(size / devices) * devices
        sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    num_chunks = math.ceil(n / size)
    inputs = _pad(inputs, num_chunks * size)
    outputs = []
    for i in range(num_chunks):
        chunk = jax.tree.map(lambda a: a[i * size:(i + 1) * size], inputs)
        if sharding is not None:
            chunk = jax.device_put(chunk, sharding)
        out = jax.block_until_ready(fn(chunk))  # one sync per chunk (collectives must not queue up)
        outputs.append(out if num_chunks == 1 else jax.device_get(out))
    if num_chunks == 1:
        return jax.tree.map(lambda a: a[:n], outputs[0])
    return jax.tree.map(lambda *parts: np.concatenate(parts)[:n], *outputs)


def check_samples(samples, where: str):
    """Raise ``FloatingPointError`` if any sample is NaN/inf (the model produced non-finite values)."""
    finite = np.asarray(jnp.all(jnp.isfinite(jnp.reshape(samples, (samples.shape[0], -1))), axis=1))
    if not finite.all():
        raise FloatingPointError(
            f"{where}: {int((~finite).sum())} of {finite.size} samples are NaN or inf: the model returned "
            "non-finite values during sampling (check its weights, and that the schedule/prediction pair is finite "
            "on the sampled interval)"
        )
    return samples
