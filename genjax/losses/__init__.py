"""Pure per-sample losses, batched with ``vmap`` (MATH.md §4)."""

from .interpolant import interpolant_loss, sample_time

__all__ = ["interpolant_loss", "sample_time"]
