"""Likelihood-based paradigms beside the interpolant trainer (docs/MATH.md §14–15).

``diffusion_bound``: the discrete-time diffusion bound (Sohl-Dickstein et al. 2015, Ho et al. 2020);
``vae``: VAE, β-VAE, IWAE, VQ-VAE, FSQ; ``autoregressive``: MADE, PixelCNN, a causal transformer.
Functions stay namespaced (``genjax.models.autoregressive.bits_per_dim``).
"""

from . import autoregressive, diffusion_bound, vae
from .diffusion_bound import bound_terms, iw_log_likelihood, sohl_dickstein_k, train_ddpm
from .vae import VAE, VQVAE, train_vae, train_vqvae

__all__ = ["VAE", "VQVAE", "autoregressive", "bound_terms", "diffusion_bound", "iw_log_likelihood",
           "sohl_dickstein_k", "train_ddpm", "train_vae", "train_vqvae", "vae"]
