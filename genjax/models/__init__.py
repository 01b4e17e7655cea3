"""Likelihood-based paradigms beside the interpolant trainer (docs/MATH.md §14–15).

``diffusion_bound``: the discrete-time diffusion bound (Sohl-Dickstein et al. 2015, Ho et al. 2020);
``vae``: VAE, β-VAE, IWAE, VQ-VAE, FSQ; ``autoregressive``: MADE, PixelCNN, a causal transformer;
``gan``: GANs, f-GANs, WGAN-GP, RpGAN, spectral normalisation; ``jepa``: joint-embedding predictive world models.
Functions stay namespaced (``genjax.models.autoregressive.bits_per_dim``).
"""

from . import autoregressive, diffusion_bound, gan, jepa, vae
from .gan import GAN, train_gan
from .jepa import JEPA, train_jepa
from .diffusion_bound import bound_terms, iw_log_likelihood, sohl_dickstein_k, train_ddpm
from .vae import VAE, VQVAE, train_vae, train_vqvae

__all__ = ["GAN", "JEPA", "VAE", "VQVAE", "autoregressive", "bound_terms", "diffusion_bound", "gan", "iw_log_likelihood", "jepa",
           "sohl_dickstein_k", "train_ddpm", "train_gan", "train_jepa", "train_vae", "train_vqvae", "vae"]
