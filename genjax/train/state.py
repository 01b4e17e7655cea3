"""``TrainState``: everything a training run carries from one step to the next, as one pytree."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

__all__ = ["TrainState"]


@struct.dataclass
class TrainState:
    """Parameters, optimizer state, EMA parameters, step counter and PRNG key.

    Every field but ``tx`` is a pytree leaf container, so the whole state can be
    jitted, sharded and checkpointed as one object; ``tx`` (the optax
    ``GradientTransformation``) is static. ``step`` counts completed updates (int32);
    ``key`` is a raw ``uint32[2]`` key (typed keys are converted by ``create``), split
    once per step, so the data stream and the loss noise are pure functions of it.
    """

    params: Any
    opt_state: Any
    ema_params: Any
    step: jax.Array
    key: jax.Array
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def create(cls, params: Any, tx: optax.GradientTransformation, key: jax.Array) -> "TrainState":
        """A fresh state: ``opt_state = tx.init(params)``, ``ema_params = params``, ``step = 0``."""
        if not (hasattr(tx, "init") and hasattr(tx, "update")):
            raise ValueError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}")
        key = jnp.asarray(key)
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.key_data(key)
        if key.shape != (2,) or key.dtype != jnp.uint32:
            raise ValueError(
                f"key must be a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), "
                f"got an array of shape {key.shape} and dtype {key.dtype}"
            )
        params = jax.tree.map(jnp.asarray, params)
        if not jax.tree.leaves(params):
            raise ValueError("params must be a non-empty pytree of arrays")
        return cls(
            params=params,
            opt_state=tx.init(params),
            ema_params=params,
            step=jnp.zeros((), jnp.int32),
            key=key,
            tx=tx,
        )
