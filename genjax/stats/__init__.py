"""Classical estimation and divergences: Gaussian MLE, GMM-EM, KDE, KL/JS and f-divergences (MATH.md §8).

Sample metrics (MMD, energy distance, W2, Fréchet) live in :mod:`genjax.metrics`.
"""

from .divergences import (
    F_DIVERGENCES,
    JENSEN_SHANNON,
    KL,
    NEYMAN,
    PEARSON,
    REVERSE_KL,
    SQUARED_HELLINGER,
    TOTAL_VARIATION,
    FDivergence,
    MCEstimate,
    f_divergence,
    kl_gaussian,
    mc_js,
    mc_kl,
)
from .gaussian import (
    gaussian_fisher_information,
    gaussian_log_prob,
    gaussian_mle,
    gaussian_mle_gradient,
    jko_step_gaussian,
    mean_log_likelihood,
    minimise,
    mle_standard_errors,
)
from .gmm import GMMFit, em, fit_gmm, init_gmm, kmeans_plusplus
from .kde import KDE, kde, scott_factor, silverman_factor
from .ppca import PPCA, ppca_covariance, ppca_log_likelihood, ppca_log_prob, ppca_mle, ppca_posterior

__all__ = [
    "F_DIVERGENCES",
    "FDivergence",
    "GMMFit",
    "JENSEN_SHANNON",
    "KDE",
    "KL",
    "MCEstimate",
    "NEYMAN",
    "PPCA",
    "PEARSON",
    "REVERSE_KL",
    "SQUARED_HELLINGER",
    "TOTAL_VARIATION",
    "em",
    "f_divergence",
    "fit_gmm",
    "gaussian_fisher_information",
    "gaussian_log_prob",
    "gaussian_mle",
    "gaussian_mle_gradient",
    "init_gmm",
    "jko_step_gaussian",
    "kde",
    "kl_gaussian",
    "kmeans_plusplus",
    "mc_js",
    "ppca_covariance",
    "ppca_log_likelihood",
    "ppca_log_prob",
    "ppca_mle",
    "ppca_posterior",
    "mc_kl",
    "mean_log_likelihood",
    "minimise",
    "mle_standard_errors",
    "scott_factor",
    "silverman_factor",
]
