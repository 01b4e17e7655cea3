"""Bijectors, their composition, the standard-normal base and the flow likelihood (MATH.md §7).

Direction convention (distrax/TFP): ``forward`` is the *generative* map base → data
(``z ↦ x``) and ``inverse`` the *normalising* map data → base (``x ↦ z``).  A flow with
generator ``f`` has density (change of variables, MATH.md §4)

    log p(x) = log p_Z(f⁻¹(x)) + log|det ∂f⁻¹/∂x|,

so training minimises ``−log p(x)`` and only ever runs ``inverse``; sampling runs ``forward``.
Layer names describe the normalising direction as in the papers (``squeeze`` turns data
``(H, W, C)`` into ``(H/2, W/2, 4C)`` on the way to the base).

A :class:`Bijector` is three pure functions; ``forward_and_log_det`` and
``inverse_and_log_det`` act on ONE sample (an array of the event shape) and return the
per-sample ``log|det J|`` of the map they compute, so ``jax.jacfwd`` checks them directly;
batches go through ``jax.vmap``.  ``init(key, y)`` receives a batch ``(n, *event)`` from the
*data* side (forward output), which data-dependent layers (ActNorm) use.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from .._checks import check_finite

__all__ = ["Bijector", "chain", "reshape", "StandardNormal", "Flow", "check_batch"]

Params = Any


@dataclasses.dataclass(frozen=True)
class Bijector:
    """A bijection as pure functions (distrax/TFP names).

    Args:
      init: ``(key, y_batch) -> params``; ``y_batch`` is ``(n, *event)`` on the data side.
      forward_and_log_det: ``(params, x) -> (y, log|det ∂y/∂x|)`` for one sample (base → data).
      inverse_and_log_det: ``(params, y) -> (x, log|det ∂x/∂y|)`` for one sample (data → base).
      name: label for messages.
    """

    init: Callable[[jax.Array, jax.Array], Params]
    forward_and_log_det: Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]
    inverse_and_log_det: Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]
    name: str = "bijector"

    def forward(self, params, x):
        return self.forward_and_log_det(params, x)[0]

    def inverse(self, params, y):
        return self.inverse_and_log_det(params, y)[0]


def chain(bijectors: Sequence[Bijector], name: str = "chain") -> Bijector:
    """Composition ``f = f_1 ∘ f_2 ∘ … ∘ f_K`` (distrax ``Chain`` order); params are a tuple.

    The list reads from the data side: ``inverse`` (data → base) applies ``f_1⁻¹`` first,
    ``forward`` applies ``f_K`` first.  Log-determinants add.  ``init`` pushes the data batch
    through each freshly initialised layer's inverse, so data-dependent layers see the
    activations they will act on.
    """
    bijectors = tuple(bijectors)
    if not bijectors or not all(isinstance(b, Bijector) for b in bijectors):
        raise ValueError(f"chain: expected a non-empty sequence of Bijector, got {bijectors!r}")

    def init(key, y):
        params = []
        for i, (bij, k) in enumerate(zip(bijectors, jax.random.split(key, len(bijectors)))):
            params.append(bij.init(k, y))
            if i + 1 < len(bijectors):  # the last layer's output is not needed
                y = jax.vmap(bij.inverse, (None, 0))(params[-1], y)
        return tuple(params)

    def forward(params, x):
        total = jnp.zeros((), x.dtype)
        for bij, p in zip(reversed(bijectors), reversed(params)):
            x, ld = bij.forward_and_log_det(p, x)
            total = total + ld
        return x, total

    def inverse(params, y):
        total = jnp.zeros((), y.dtype)
        for bij, p in zip(bijectors, params):
            y, ld = bij.inverse_and_log_det(p, y)
            total = total + ld
        return y, total

    return Bijector(init, forward, inverse, name)


def reshape(data_shape: Sequence[int], base_shape: Sequence[int]) -> Bijector:
    """Volume-preserving reshape: data side ``data_shape`` ↔ base side ``base_shape`` (log|det| = 0)."""
    data_shape, base_shape = tuple(data_shape), tuple(base_shape)
    if math.prod(data_shape) != math.prod(base_shape):
        raise ValueError(f"reshape: sizes differ, data_shape={data_shape} vs base_shape={base_shape}")
    zero = lambda x: jnp.zeros((), x.dtype)  # noqa: E731
    return Bijector(
        init=lambda key, y: (),
        forward_and_log_det=lambda p, x: (jnp.reshape(x, data_shape), zero(x)),
        inverse_and_log_det=lambda p, y: (jnp.reshape(y, base_shape), zero(y)),
        name="reshape",
    )


@dataclasses.dataclass(frozen=True)
class StandardNormal:
    """``N(0, I)`` over an event of shape ``event_shape``; ``log_prob`` is per sample."""

    event_shape: tuple[int, ...]

    def log_prob(self, z):
        """``−½ Σ z² − (D/2) log 2π`` summed over the event."""
        size = math.prod(self.event_shape)
        return -0.5 * jnp.sum(jnp.square(z)) - 0.5 * size * math.log(2 * math.pi)

    def sample(self, key, n: int):
        return jax.random.normal(key, (n, *self.event_shape))


def check_batch(x, event_shape: Sequence[int], argument: str = "x", allow_single: bool = True) -> jax.Array:
    """Return ``x`` as an array after checking it is ``(n, *event_shape)`` (or one sample) and finite.

    The finiteness check runs only on concrete arrays (not under ``jit``).
    """
    event_shape = tuple(event_shape)
    x = jnp.asarray(x)
    k = len(event_shape)
    ok = x.shape[x.ndim - k :] == event_shape and (x.ndim == k + 1 or (allow_single and x.ndim == k))
    if not ok:
        expected = f"(n, {', '.join(map(str, event_shape))})" + (" or a single event" if allow_single else "")
        raise ValueError(f"{argument} must have shape {expected}; got {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.number):
        raise ValueError(f"{argument} must be numeric, got dtype {x.dtype}")
    check_finite(argument, x)
    return x


@dataclasses.dataclass(frozen=True)
class Flow:
    """Normalizing flow ``x = f(z)``, ``z ~ N(0, I)``: a generator bijector plus the data event shape.

    ``log_prob(x) = log p_Z(f⁻¹(x)) + log|det ∂f⁻¹/∂x|``; the base event shape is whatever
    ``f⁻¹`` returns (e.g. flat for a multi-scale Glow).
    """

    bijector: Bijector
    event_shape: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "event_shape", tuple(int(s) for s in self.event_shape))

    def init(self, key, x) -> Params:
        """Parameters, with data-dependent layers initialised on the batch ``x`` ``(n, *event)`` (compiled)."""
        x = check_batch(x, self.event_shape, "x", allow_single=False)
        return jax.jit(self.bijector.init)(key, x.astype(jnp.float32))

    def base(self, params) -> StandardNormal:
        probe = jax.ShapeDtypeStruct(self.event_shape, jnp.float32)
        out = jax.eval_shape(self.bijector.inverse, params, probe)
        return StandardNormal(tuple(out.shape))

    def _log_prob_one(self, params, x):
        z, log_det = self.bijector.inverse_and_log_det(params, x)
        return self.base(params).log_prob(z) + log_det

    def log_prob(self, params, x):
        """``log p(x)`` in nats; ``x`` is ``(n, *event)`` → ``(n,)``, or one event → scalar."""
        x = check_batch(x, self.event_shape)
        if x.ndim == len(self.event_shape):
            return self._log_prob_one(params, x)
        return jax.vmap(self._log_prob_one, (None, 0))(params, x)

    def sample(self, params, key, n: int):
        """``n`` draws ``f(z)``, ``z ~ N(0, I)``: shape ``(n, *event)``."""
        z = self.base(params).sample(key, n)
        return jax.vmap(self.bijector.forward, (None, 0))(params, z)

    def loss(self, params, batch, key=None):
        """Flow NLL ``mean(−log p(x))`` as a ``genjax.fit`` loss: ``(loss, {"nll": loss})``."""
        del key
        nll = -jnp.mean(self.log_prob(params, batch))
        return nll, {"nll": nll}
