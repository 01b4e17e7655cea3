"""Size and cost of a network: parameter count and XLA's FLOP count of a compiled function."""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

__all__ = ["count_params", "flops", "compiled_flops"]


def count_params(params) -> int:
    """Number of scalars in a pytree of arrays (e.g. a Flax ``params`` dict)."""
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def flops(fn: Callable, *args) -> float:
    """FLOPs of one call ``fn(*args)`` as counted by XLA's cost analysis of ``jax.jit(fn)``.

    ``jax.jit(fn).lower(*args).compile().cost_analysis()["flops"]`` (a dict, or a list with
    one dict per computation on older jax).  XLA counts a multiply–add as 2 FLOPs, so an
    ``(m, k) @ (k, n)`` product is ``2 m n k`` and a convolution 2 per kernel tap that falls
    inside the unpadded input (padding taps are not counted); elementwise ops count one per
    element.
    ``args`` may be arrays or ``jax.ShapeDtypeStruct``s.
    """
    return compiled_flops(jax.jit(fn).lower(*args).compile())


def compiled_flops(compiled) -> float:
    """``flops`` of an already compiled ``jax.stages.Compiled`` (``jax.jit(fn).lower(*args).compile()``)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    if not analysis or "flops" not in analysis:
        raise RuntimeError(f"flops: XLA's cost analysis on backend {jax.default_backend()!r} reports no 'flops' "
                           f"entry (got {sorted(analysis or {})})")
    return float(analysis["flops"])
