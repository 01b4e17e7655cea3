"""The model contract: a per-sample callable ``fn(t, x)`` or ``fn(t, x, c)`` passed as **data**.

Samplers, likelihoods and losses take the model as an ordinary argument of their compiled
functions (``equinox.filter_jit``): every array leaf of the model's pytree is traced, and
only what is not an array (the apply function, a Flax graph definition, Python numbers) is
hashed into the compilation cache.  So new weights of the same shapes never recompile and
are never baked into the program as constants.  Any of these is a model:

* ``genjax.Model(apply_fn, params)`` — ``apply_fn(params, t, x[, c])``, e.g. a Flax linen
  ``module.apply`` with its params (reuse one ``apply_fn`` object to share the cache);
* a Flax NNX module or an Equinox module (pytrees whose leaves are their weights);
* ``jax.tree_util.Partial(apply_fn, params)``;
* a plain function ``fn(t, x)`` (analytic fields; arrays it closes over are constants).

What the model computes is per sample: scalar ``t``, ``x`` of the event shape, and — when
a conditioning batch ``c`` is given to a sampler/loss — that sample's ``c`` (a class label,
a context array, or a pytree of them).  Its output has the shape and dtype of ``x``.
"""

from __future__ import annotations

from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_finite

__all__ = ["Model", "Heads", "call", "check_output", "check_conditioning", "per_sample", "filter_jit"]

filter_jit = eqx.filter_jit


class Model(eqx.Module):
    """``Model(apply_fn, params)``: the callable pytree ``(t, x[, c]) ↦ apply_fn(params, t, x[, c])``.

    ``params`` are the traced leaves; ``apply_fn`` is static (hashed by identity).
    """

    apply_fn: Callable = eqx.field(static=True)
    params: Any

    def __call__(self, t, x, c=None):
        if c is None:
            return self.apply_fn(self.params, t, x)
        return self.apply_fn(self.params, t, x, c)


class Heads(eqx.Module):
    """Several models as one model with a tuple output, ``(t, x[, c]) ↦ (m(t, x[, c]) for m in models)``.

    Two separately trained models of a two-sided path, e.g. ``Heads(b_model, eta_model)`` with
    ``prediction=("velocity", "noise")``, drive the SDE samplers like one two-head network.
    """

    models: tuple

    def __init__(self, *models):
        self.models = tuple(models)

    def __call__(self, t, x, c=None):
        return tuple(call(m, t, x, c) for m in self.models)


def call(model, t, x, c=None):
    """``model(t, x)``, or ``model(t, x, c)`` when a conditioning input is given."""
    return model(t, x) if c is None else model(t, x, c)


def per_sample(model, c=None) -> Callable:
    """The per-sample field ``(t, x) ↦ model(t, x[, c])`` with this sample's ``c`` bound."""
    return lambda t, x: call(model, t, x, c)


def check_output(model, t, x, c=None, *, where: str = "model", heads: int = 1) -> None:
    """Raise ``ValueError`` unless ``model(t, x[, c])`` returns an array of ``x``'s shape and dtype.

    Abstract evaluation (``jax.eval_shape``): no FLOPs; called once per trace by every
    sampler, likelihood and loss, so a model returning e.g. ``x[:1]`` fails loudly instead
    of broadcasting into plausible-looking wrong samples.  A model with ``heads > 1`` (a
    two-sided ``(b, η)`` model, :class:`Heads`) returns a tuple of ``heads`` such arrays.
    """
    try:
        out = eqx.filter_eval_shape(call, model, t, x, c)
    except Exception as err:
        signature = "fn(t, x)" if c is None else "fn(t, x, c)"
        raise ValueError(
            f"{where}: calling the model as {signature} per sample (t scalar, x of shape {jnp.shape(x)}"
            + ("" if c is None else f", c of shape {jnp.shape(c)}")
            + f") failed: {type(err).__name__}: {err}"
        ) from err
    if heads > 1:
        if not (isinstance(out, (tuple, list)) and len(out) == heads):
            raise ValueError(f"{where}: a model for {heads} predictions must return a tuple of {heads} arrays (one per "
                             f"head, e.g. genjax.model.Heads), got {jax.tree.structure(out)}")
        outs = tuple(out)
    elif not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(f"{where}: the model must return one array per sample, got {jax.tree.structure(out)}")
    else:
        outs = (out,)
    for out in outs:
        if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != jnp.shape(x) or out.dtype != jnp.result_type(x):
            got = f"{out.shape} {out.dtype}" if isinstance(out, jax.ShapeDtypeStruct) else str(jax.tree.structure(out))
            raise ValueError(
                f"{where}: the model must return an array of the per-sample shape and dtype of x, "
                f"{jnp.shape(x)} {jnp.result_type(x)}; got {got}"
            )


def check_conditioning(c, n: int):
    """``c`` (a pytree of arrays with leading axis ``n``, one entry per sample) as jax arrays, or None."""
    if c is None:
        return None
    if isinstance(c, (list, tuple)) and c and not hasattr(c[0], "shape"):
        c = np.asarray(c)
    c = jax.tree.map(jnp.asarray, c)
    for leaf in jax.tree.leaves(c):
        if leaf.ndim < 1 or leaf.shape[0] != n:
            raise ValueError(f"c must be batched alongside x: every leaf needs the leading axis n={n}, "
                             f"got shape {leaf.shape}")
        check_finite("c", leaf)
    return c
