"""Eager input checks shared by the public functions (skipped for traced values under jit)."""

from __future__ import annotations

import jax
import numpy as np


def is_concrete(x) -> bool:
    """True when ``x`` holds values now (not a tracer inside ``jit``/``vmap``/``grad``)."""
    return not isinstance(x, jax.core.Tracer)


def check_finite(name: str, x) -> None:
    """Raise ``ValueError`` if a concrete ``x`` holds NaN or inf values."""
    if x is not None and is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
        raise ValueError(f"{name} contains NaN or inf values")


def check_batch(name: str, x, min_ndim: int = 2) -> None:
    """Raise ``ValueError`` unless ``x`` has at least ``min_ndim`` axes (a batch ``(n, *event)``) and is finite."""
    if np.ndim(x) < min_ndim:
        raise ValueError(f"{name} must be a batch of shape (n, *event_shape), got shape {np.shape(x)}")
    check_finite(name, x)
