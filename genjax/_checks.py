"""Eager argument checks shared by the public functions (skipped for traced values under jit).

Every check raises a ``ValueError`` that names the argument and the expected form.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """True when ``x`` holds values now (not a tracer inside ``jit``/``vmap``/``grad``)."""
    return not isinstance(x, jax.core.Tracer)


def check_finite(name: str, x) -> None:
    """Raise ``ValueError`` if a concrete floating-point ``x`` holds NaN or inf values (integers and PRNG keys pass)."""
    if x is None or not is_concrete(x):
        return
    if not jnp.issubdtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype, jnp.inexact):
        return
    if not np.all(np.isfinite(np.asarray(x))):
        raise ValueError(f"{name} contains NaN or inf values")


def check_batch(name: str, x, min_ndim: int = 2) -> None:
    """Raise ``ValueError`` unless ``x`` has at least ``min_ndim`` axes (a batch ``(n, *event)``) and is finite."""
    if np.ndim(x) < min_ndim:
        raise ValueError(f"{name} must be a batch of shape (n, *event_shape), got shape {np.shape(x)}")
    check_finite(name, x)


def float_batch(x, name: str = "x") -> jax.Array:
    """``x`` as a float array ``(n, *event)`` (2-D or more, n >= 1) with finite entries; ints are converted."""
    if isinstance(x, (list, tuple)):
        raise ValueError(f"{name} must be an array of shape (n, *event_shape), got a Python {type(x).__name__}; "
                         "convert it with jnp.asarray(..., dtype=jnp.float32)")
    check_batch(name, x)
    x = jnp.asarray(x)
    if x.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one sample, got shape {x.shape}")
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def check_shape(shape, name: str = "shape") -> tuple[int, ...]:
    """``shape`` as a tuple ``(n, *event_shape)`` of positive ints with at least 2 entries."""
    if not isinstance(shape, (tuple, list)) or len(shape) < 2 or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in shape
    ):
        raise ValueError(
            f"{name} must be a tuple (n, *event_shape) of positive ints with at least 2 entries, got {shape!r}"
        )
    return tuple(int(s) for s in shape)


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_optional_positive_int(value, name: str) -> int | None:
    return None if value is None else check_positive_int(value, name)


def check_positive_float(value, name: str) -> float:
    is_number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not is_number or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not known; expected one of {tuple(choices)}")
    return value


def check_callable(value, name: str, form: str) -> None:
    if not callable(value):
        raise ValueError(f"{name} must be a callable {form}, got {value!r:.80}")


def check_batch_tree(name: str, tree, size: int | None = None) -> int:
    """Check ``tree`` is a batch for a trainer and return its leading (example) axis size.

    An array, or a pytree of arrays, numeric (integers allowed: discrete data, labels, tokens)
    and sharing a non-empty leading axis (of ``size`` if given), with finite floats. Python
    numbers (lists) are refused with how to convert them.
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{name} must be an array or a non-empty pytree of arrays, got {tree!r:.80}")
    for leaf in leaves:
        if isinstance(leaf, (int, float, complex, np.generic)):
            raise ValueError(
                f"{name} must hold arrays with a leading example axis (N, ...), got Python numbers "
                f"({type(tree).__name__} {tree!r:.60}); convert it with np.asarray(..., np.float32)"
            )
        if not (isinstance(leaf, (np.ndarray, jax.Array)) and leaf.ndim >= 1 and
                (np.issubdtype(leaf.dtype, np.number) or leaf.dtype == bool)):
            raise ValueError(
                f"{name} must hold numeric arrays with a leading example axis (N, ...); "
                f"got a {type(leaf).__name__} with shape {getattr(leaf, 'shape', None)}"
            )
    sizes = sorted({leaf.shape[0] for leaf in leaves})
    if len(sizes) > 1:
        raise ValueError(f"{name}: the arrays disagree on the leading (example) axis, sizes {sizes}")
    if sizes[0] == 0:
        raise ValueError(f"{name} is empty (its leading axis has size 0)")
    if size is not None and sizes[0] != size:
        raise ValueError(f"{name} must have leading axis batch_size={size}, got {sizes[0]}")
    for leaf in leaves:
        if np.issubdtype(leaf.dtype, np.inexact):
            check_finite(name, leaf)
    return sizes[0]
