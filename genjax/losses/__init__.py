"""Pure per-sample losses, batched with ``vmap`` (MATH.md §4)."""

from .interpolant import interpolant_loss, sample_time
from .score import (
    PROJECTIONS,
    dsm,
    dsm_loss,
    esm,
    esm_loss,
    geometric_sigmas,
    ncsn,
    ncsn_loss,
    ssm,
    ssm_loss,
)

__all__ = [
    "PROJECTIONS",
    "dsm",
    "dsm_loss",
    "esm",
    "esm_loss",
    "geometric_sigmas",
    "interpolant_loss",
    "ncsn",
    "ncsn_loss",
    "sample_time",
    "ssm",
    "ssm_loss",
]
