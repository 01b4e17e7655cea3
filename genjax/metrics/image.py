"""Image metrics: FD, KID, precision and recall in a feature space next to their data floor; conditional accuracy;
Inception score; bits/dim.

A metric between model samples and real images is read against the same metric between a
*disjoint* set of real images (``reference``, as many as there are samples) and the same real
images: the value a perfect model reaches at this sample size (MATH.md §8).
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np
import scipy.special

from .. import likelihood
from ..data import images as image_data
from .features import FeatureNet
from .knn import knn_precision_recall
from .samples import _mean_and_se, frechet_distance_samples, kid

__all__ = ["image_metrics", "conditional_accuracy", "inception_score", "image_bits_per_dim"]


def _embed(features: FeatureNet | Callable, images, arg: str):
    extract = features.features if isinstance(features, FeatureNet) else features
    if not callable(extract):
        raise ValueError(f"image_metrics: features must be a FeatureNet or a callable images -> (n, d), "
                         f"got {features!r:.80}")
    out = np.asarray(extract(images), np.float32)
    if out.ndim != 2 or out.shape[0] != len(images):
        raise ValueError(f"image_metrics: features of {arg} must have shape ({len(images)}, d), got {out.shape}")
    return out


def _table(fake, real, *, k: int, key, kid_subsets: int) -> dict[str, float]:
    """FD, KID and k-NN precision/recall of feature sets ``fake`` against ``real``."""
    kid_options = {} if key is None else {"num_subsets": kid_subsets, "key": key}
    precision, recall = knn_precision_recall(real, fake, k)
    return {"fd": float(frechet_distance_samples(fake, real)), "kid": float(kid(fake, real, **kid_options)),
            "precision": precision, "recall": recall}


def image_metrics(samples, real, reference, features: FeatureNet | Callable, *, key=None, k: int = 3,
                  kid_subsets: int = 100) -> dict[str, float]:
    """Fréchet distance, KID and k-NN precision/recall of ``samples`` against ``real``, each with its data floor.

    All three image sets are ``(n, H, W, C)`` in the feature net's input space (model space
    ``[−1, 1]``; integer data through :func:`~genjax.metrics.bin_centres`).  ``features`` is a
    :class:`FeatureNet` or a callable ``images -> (n, d)``.  The floor ``<name>_floor`` is the same
    metric for ``reference`` — real images disjoint from ``real``, as many as ``samples`` — against
    ``real``.  Fréchet distance ``‖μ_s − μ_r‖² + tr(Σ_s + Σ_r − 2(Σ_s^{1/2} Σ_r Σ_s^{1/2})^{1/2})``
    (Heusel et al. 2017) of the feature moments; KID (Bińkowski et al. 2018) on all points, or averaged
    over ``kid_subsets`` random subsets drawn with ``key``; precision and recall with ``k``-NN balls
    (Kynkäänniemi et al. 2019).

    Returns ``{fd, fd_floor, kid, kid_floor, precision, precision_floor, recall, recall_floor}``.
    """
    if len(samples) != len(reference):
        raise ValueError(f"image_metrics: samples and reference must hold the same number of images (the floor is "
                         f"taken at the sample size), got {len(samples)} and {len(reference)}")
    fake, ref, real_f = (_embed(features, a, arg) for a, arg in ((samples, "samples"), (reference, "reference"),
                                                                  (real, "real")))
    keys = (None, None) if key is None else jax.random.split(key)
    model, floor = (_table(a, real_f, k=k, key=kk, kid_subsets=kid_subsets) for a, kk in ((fake, keys[0]), (ref, keys[1])))
    return {out: value for name in model for out, value in ((name, model[name]), (f"{name}_floor", floor[name]))}


def conditional_accuracy(classifier: FeatureNet, samples, labels) -> float:
    """Fraction of class-conditional ``samples`` that ``classifier`` assigns to the requested class ``labels[i]``."""
    if not isinstance(classifier, FeatureNet) or classifier.num_classes is None:
        raise ValueError("conditional_accuracy: classifier must be a FeatureNet with a logits layer "
                         "(e.g. genjax.metrics.digit_classifier())")
    labels = np.asarray(labels)
    if labels.shape != (len(samples),) or not np.issubdtype(labels.dtype, np.integer) \
            or labels.min() < 0 or labels.max() >= classifier.num_classes:
        raise ValueError(f"conditional_accuracy: labels must be {len(samples)} integers in 0..{classifier.num_classes - 1} "
                         f"(one per sample), got shape {labels.shape} and dtype {labels.dtype}")
    return float(np.mean(classifier.predict(samples) == labels))


def inception_score(classifier: FeatureNet | Callable, samples, *, splits: int = 10) -> tuple[float, float]:
    """``IS = exp(E_x KL(p(y|x) ‖ p(y)))`` of ``samples`` under a classifier, mean and s.d. over ``splits`` (Salimans
    et al. 2016, "Improved techniques for training GANs").

    ``classifier`` is a :class:`FeatureNet` with a logits layer (e.g. :func:`~genjax.metrics.digit_classifier`,
    samples ``(n, H, W, C)`` in model space) or a callable ``samples -> (n, K)`` logits.  The samples are cut into
    ``splits`` consecutive parts (``numpy.array_split``); in each, ``p(y)`` is the mean of ``p(y|x) = softmax``
    over the part and the score ``exp(mean_x KL(p(y|x) ‖ p(y)))``; returned: the mean and the standard deviation
    (``ddof = 0``, as the authors' code) of the ``splits`` scores.  In float64.

    ``E_x KL(p(y|x) ‖ p(y)) = I(x; y) = H(y) − H(y|x)``, so ``1 ≤ IS ≤ K``: confident predictions (``H(y|x) = 0``)
    spread evenly over the ``K`` classes give ``K``, one constant prediction gives 1.  It sees only the
    classifier's output, so it is blind to diversity within a class: one image per class, repeated, scores as
    high as the real data.
    """
    if isinstance(classifier, FeatureNet):
        if classifier.num_classes is None:
            raise ValueError("inception_score: classifier must be a FeatureNet with a logits layer "
                             "(e.g. genjax.metrics.digit_classifier()) or a callable samples -> (n, K) logits")
        logits_fn = classifier.logits
    elif callable(classifier):
        logits_fn = classifier
    else:
        raise ValueError(f"inception_score: classifier must be a FeatureNet or a callable samples -> (n, K) logits, "
                         f"got {classifier!r:.80}")
    if isinstance(splits, bool) or not isinstance(splits, (int, np.integer)) or not 1 <= splits <= len(samples):
        raise ValueError(f"inception_score: splits must be an integer in [1, n={len(samples)}], got {splits!r}")
    logits = np.asarray(logits_fn(samples), np.float64)
    if logits.ndim != 2 or logits.shape[0] != len(samples) or logits.shape[1] < 2:
        raise ValueError(f"inception_score: logits must have shape ({len(samples)}, K) with K >= 2 classes, "
                         f"got {logits.shape}")
    if not np.all(np.isfinite(logits)):
        raise ValueError("inception_score: the classifier returned NaN or inf logits")
    scores = []
    for part in np.array_split(scipy.special.log_softmax(logits, axis=1), int(splits)):
        log_marginal = scipy.special.logsumexp(part, axis=0) - np.log(len(part))
        scores.append(np.exp(np.mean(np.sum(np.exp(part) * (part - log_marginal), axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


def image_bits_per_dim(model, interpolant, x, key, *, prediction: str, levels: int, divergence: str = "hutchinson",
                       **log_likelihood_kwargs) -> tuple[float, float]:
    """Mean bits/dim of integer images through the PF-ODE and its standard error (MATH.md §6).

    Each image ``x_i`` (``(n, H, W, C)``, or any ``(n, *event)``, integers ``0..levels−1``) is
    dequantised and scaled to ``[−1, 1)`` by ``genjax.data.images.to_model_space(·, levels,
    "symmetric")``, scored by :func:`genjax.log_likelihood` on its own event shape, and converted by
    ``discrete_bits_per_dim``: ``bpd_i = −(log p(y_i) + D log 2 − D log K) / (D ln 2)``.  The mean is
    an upper bound on the discrete model's bits/dim in expectation (Theis et al. 2016); the standard
    error ``sd(bpd_i)/√n`` covers the images, the dequantisation noise and, with
    ``divergence="hutchinson"`` (one probe per image, kept along its trajectory: unbiased), the probe.
    ``key`` draws the dequantisation noise and the probes; ``log_likelihood_kwargs`` (``probe``,
    ``solver``, ``rtol``, ``atol``, ``chunk_size``, ``c``, ...) go to :func:`genjax.log_likelihood`.
    """
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"image_bits_per_dim: x must be a batch of at least 2 integer images (n, H, W, C), "
                         f"got shape {x.shape}")
    dequantise_key, probe_key = jax.random.split(key)
    y, log_det = image_data.to_model_space(dequantise_key, x, levels, "symmetric")
    log_prob = likelihood.log_likelihood(model, interpolant, y, probe_key, prediction=prediction, divergence=divergence,
                                         **log_likelihood_kwargs)
    bits = image_data.discrete_bits_per_dim(log_prob, log_det, int(np.prod(x.shape[1:])), levels)
    return _mean_and_se("image_bits_per_dim", bits, "bits per dimension")
