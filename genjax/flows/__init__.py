"""Normalizing flows: bijectors (RealNVP, Glow) and continuous normalizing flows (FFJORD).

Convention: ``forward`` maps base → data (generative), ``inverse`` maps data → base
(normalising); ``log p(x) = log p_Z(f⁻¹(x)) + log|det ∂f⁻¹/∂x|`` (MATH.md §7).
"""

from .bijector import Bijector, Flow, StandardNormal, chain, check_batch, reshape
from .cnf import ADJOINTS, CNF, ffjord
from .coupling import MLP, affine_coupling, coupling_masks, realnvp
from .glow import actnorm, factor_out, glow, glow_2d, glow_step, lu_linear, squeeze

__all__ = [
    "Bijector",
    "Flow",
    "StandardNormal",
    "chain",
    "check_batch",
    "reshape",
    "MLP",
    "affine_coupling",
    "coupling_masks",
    "realnvp",
    "actnorm",
    "factor_out",
    "glow",
    "glow_2d",
    "glow_step",
    "lu_linear",
    "squeeze",
    "ADJOINTS",
    "CNF",
    "ffjord",
]
