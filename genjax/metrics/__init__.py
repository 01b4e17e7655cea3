"""Sample metrics and image metrics (MATH.md §8).

* :mod:`.samples` — two-sample statistics on ``(n, d)`` arrays (MMD², energy distance, KID,
  sliced / exact Wasserstein, Fréchet distance), NLL and bits/dim reporting, sample
  cross-entropy, data floors;
* :mod:`.knn` — k-NN precision and recall (Kynkäänniemi et al. 2019);
* :mod:`.paths` — straightness and path energy of a transport ODE (MATH.md §11);
* :mod:`.features` — feature networks for images (a cached digit classifier, fixed random
  convolutional features);
* :mod:`.image` — the image metric table with its data floor, conditional accuracy, and
  bits/dim of integer images through the PF-ODE.
"""

from .features import (
    DEFAULT_CACHE_DIR,
    ClassifierConfig,
    FeatureNet,
    bin_centres,
    digit_classifier,
    random_conv_features,
)
from .image import conditional_accuracy, image_bits_per_dim, image_metrics, inception_score
from .knn import knn_precision_recall
from .paths import Trajectory, normalised_path_energy, ode_trajectory, path_energy, straightness
from .samples import (
    MEDIAN_MULTIPLES,
    cross_entropy,
    data_floor,
    energy_distance,
    frechet_distance,
    frechet_distance_samples,
    kid,
    mean_bits_per_dim,
    mmd2,
    nll,
    sliced_wasserstein,
    wasserstein2,
)

__all__ = [
    "energy_distance",
    "mmd2",
    "kid",
    "sliced_wasserstein",
    "wasserstein2",
    "frechet_distance",
    "frechet_distance_samples",
    "nll",
    "mean_bits_per_dim",
    "cross_entropy",
    "data_floor",
    "MEDIAN_MULTIPLES",
    "knn_precision_recall",
    "Trajectory",
    "ode_trajectory",
    "straightness",
    "path_energy",
    "normalised_path_energy",
    "FeatureNet",
    "ClassifierConfig",
    "DEFAULT_CACHE_DIR",
    "bin_centres",
    "digit_classifier",
    "random_conv_features",
    "image_metrics",
    "conditional_accuracy",
    "image_bits_per_dim",
    "inception_score",
]
