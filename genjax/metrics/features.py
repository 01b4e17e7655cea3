"""Feature networks for image metrics: a cached 8×8-digit CNN classifier and a fixed random-convolution net.

Images enter in **model space** ``[−1, 1]``, NHWC.  Integer digits (``K = 17`` levels) map to
their bin centres ``y = 2(x + ½)/K − 1`` (:func:`bin_centres`), the mean of the symmetric
dequantisation ``genjax.data.images.to_model_space(key, x, K, "symmetric")``; generated samples
are used as they come.

* :func:`digit_classifier` — a small CNN trained on the digits' train split, deterministically
  (fixed seed, fixed batch order, float32), on dequantised inputs so that it is robust to the
  noise a continuous model's samples carry.  Weights, config and a hash of the training data are
  cached on disk; a cache whose config or data hash differs is retrained.  Its penultimate layer
  gives the features (the role Inception's pool layer plays in FID), its last layer the logits.
* :func:`random_conv_features` — for natural-image patches (no labels): a randomly initialised
  convolutional net, fixed by a seed and never trained.  Random networks are a label-free,
  domain-agnostic embedding for FD / precision / recall (Naeem et al. 2020, "Reliable fidelity
  and diversity metrics for generative models", random embeddings), and multi-scale random
  convolutional features already capture natural-image texture statistics (Ustyuzhaninov et al.
  2017, "What does it take to generate natural textures?").
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._checks import check_positive_float, check_positive_int
from ..data import images as image_data

__all__ = ["DEFAULT_CACHE_DIR", "ClassifierConfig", "FeatureNet", "bin_centres", "digit_classifier",
           "random_conv_features"]

DEFAULT_CACHE_DIR = Path("runs/feature_nets")
_CACHE_NAME = "digit_classifier"
_REVISION = 1  # of the architecture and training code: part of the cache key, so a change retrains


def bin_centres(x, levels: int = image_data.LEVELS) -> jax.Array:
    """``y = 2(x + ½)/K − 1``: integer images with ``K`` levels (digits: 17) at their bin centres, as a JAX array.

    :func:`genjax.data.images.to_symmetric` with ``noise = ½``.
    """
    return jnp.asarray(image_data.to_symmetric(x, levels), jnp.float32)


# -- networks -------------------------------------------------------------------------
class DigitCNN(nn.Module):
    """The digit classifier: (conv3×3(w₁)–ReLU)² – maxpool2 – conv3×3(w₂)–ReLU – maxpool2 – dense(f)–ReLU – dense(classes).

    Returns ``(features, logits)``: the ``f`` post-ReLU activations of the penultimate layer and the class logits.
    """

    widths: tuple[int, int] = (32, 64)
    feature_dim: int = 128
    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(self.widths[0], (3, 3))(x))
        h = nn.relu(nn.Conv(self.widths[0], (3, 3))(h))
        h = nn.max_pool(h, (2, 2), strides=(2, 2))
        h = nn.relu(nn.Conv(self.widths[1], (3, 3))(h))
        h = nn.max_pool(h, (2, 2), strides=(2, 2))
        features = nn.relu(nn.Dense(self.feature_dim)(h.reshape(h.shape[0], -1)))
        return features, nn.Dense(self.num_classes)(features)


class RandomConvNet(nn.Module):
    """``num_scales`` blocks conv3×3(width, no bias)–ReLU, 2×2 average pooling between blocks.

    Features: the spatial mean of every block's activations, concatenated (``num_scales · width``
    entries).  With He-normal filters (:func:`random_conv_features`) the activations keep the
    pixels' second moment through every block (He et al. 2015), so all coordinates are on the pixel
    scale and every scale weighs alike.
    """

    width: int = 64
    num_scales: int = 3

    @nn.compact
    def __call__(self, x):
        pooled, h = [], x
        for scale in range(self.num_scales):
            if scale:
                h = nn.avg_pool(h, (2, 2), strides=(2, 2))
            h = nn.relu(nn.Conv(self.width, (3, 3), use_bias=False)(h))
            pooled.append(jnp.mean(h, axis=(1, 2)))
        return jnp.concatenate(pooled, axis=-1), None


def _he_normal_params(module: nn.Module, image_shape, seed: int):
    """Parameters of ``module`` with kernels ``N(0, 2/fan_in)`` (He et al. 2015) and zero biases.

    Drawn with NumPy's ``default_rng(seed)``, whose stream is the same on every platform and
    version (and costs no compilation, unlike an eager ``module.init``).
    """
    shapes = jax.eval_shape(module.init, jax.random.key(0), jax.ShapeDtypeStruct((1, *image_shape), jnp.float32))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        if path[-1].key == "bias":
            return jnp.zeros(leaf.shape, jnp.float32)
        return jnp.asarray(rng.standard_normal(leaf.shape) * math.sqrt(2.0 / math.prod(leaf.shape[:-1])), jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


# -- the uniform feature-net object ---------------------------------------------------
_jit_apply = jax.jit(lambda module, params, images: module.apply(params, images), static_argnums=0)


def _apply_in_chunks(module, params, images, batch_size: int):
    """``module.apply(params, ·)`` on ``batch_size`` images at a time, every chunk padded to that size (one
    compilation per image shape): ``(features, logits)``.

    A Python loop over one compiled chunk: XLA on CPU runs convolutions inside ``lax.map``/``scan``
    loops more than ten times slower than at the top level.
    """
    n = images.shape[0]
    padded = jnp.pad(images, ((0, -n % batch_size),) + ((0, 0),) * 3)
    outs = [_jit_apply(module, params, padded[i:i + batch_size]) for i in range(0, padded.shape[0], batch_size)]
    return jax.tree.map(lambda *chunks: jnp.concatenate(chunks)[:n], *outs)


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureNet:
    """A fixed image embedding: ``features(images) -> (n, d)``; classifiers also give ``logits`` and ``predict``.

    ``module`` is a Flax linen module mapping a batch ``(n, *image_shape)`` in ``[−1, 1]`` to
    ``(features, logits)`` (``logits`` is ``None`` for a pure feature net, ``num_classes`` then
    ``None``); ``info`` records how the net was made (config, seed, training time, test accuracy,
    whether it came from the cache).
    """

    module: nn.Module
    params: Any
    image_shape: tuple[int, int, int]
    num_classes: int | None = None
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def _check(self, images, fn: str) -> jax.Array:
        images = jnp.asarray(images, jnp.float32)
        if images.ndim != 4 or images.shape[1:] != tuple(self.image_shape) or images.shape[0] < 1:
            raise ValueError(f"FeatureNet.{fn}: images must have shape (n, {', '.join(map(str, self.image_shape))}) "
                             f"(NHWC, model space [-1, 1]), got {images.shape}")
        if not bool(jnp.all(jnp.isfinite(images))):
            raise ValueError(f"FeatureNet.{fn}: images contain NaN or inf")
        return images

    def _apply(self, images, fn: str, batch_size: int):
        images = self._check(images, fn)
        return _apply_in_chunks(self.module, self.params, images, check_positive_int(batch_size, "batch_size"))

    def features(self, images, *, batch_size: int = 256) -> jax.Array:
        """``(n, d)`` feature vectors of images ``(n, H, W, C)`` in model space."""
        return self._apply(images, "features", batch_size)[0]

    def logits(self, images, *, batch_size: int = 256) -> jax.Array:
        """``(n, num_classes)`` class logits (classifiers only)."""
        if self.num_classes is None:
            raise ValueError("FeatureNet.logits: this feature net is not a classifier (it has no logits layer)")
        return self._apply(images, "logits", batch_size)[1]

    def predict(self, images, *, batch_size: int = 256) -> np.ndarray:
        """``(n,)`` most probable class of each image (classifiers only)."""
        return np.asarray(jnp.argmax(self.logits(images, batch_size=batch_size), axis=-1))


# -- the digit classifier ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """Architecture, optimisation and data split of :func:`digit_classifier` (all of it is the cache key)."""

    widths: tuple[int, int] = (32, 64)
    feature_dim: int = 128
    steps: int = 1000
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    test_fraction: float = 0.2
    split_seed: int = 0

    def __post_init__(self):
        if not isinstance(self.widths, (tuple, list)) or len(self.widths) != 2:
            raise ValueError(f"ClassifierConfig: widths must be two positive ints, got {self.widths!r}")
        for name in ("feature_dim", "steps", "batch_size"):
            check_positive_int(getattr(self, name), f"ClassifierConfig.{name}")
        for i, w in enumerate(self.widths):
            check_positive_int(w, f"ClassifierConfig.widths[{i}]")
        check_positive_float(self.learning_rate, "ClassifierConfig.learning_rate")
        if not 0.0 <= self.weight_decay < math.inf:
            raise ValueError(f"ClassifierConfig.weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))

    def to_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _data_hash(x, y) -> str:
    """SHA-256 of the shapes and int64 values of the training images and labels."""
    digest = hashlib.sha256()
    for a in (x, y):
        a = np.ascontiguousarray(a, np.int64)
        digest.update(str(a.shape).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _batch_order(n: int, config: ClassifierConfig) -> np.ndarray:
    """``(steps, batch_size)`` training indices: fixed-seed epoch permutations, the last partial batch dropped."""
    rng = np.random.default_rng(config.seed)
    per_epoch = n // config.batch_size
    epochs = -(-config.steps // per_epoch)
    batches = [rng.permutation(n)[: per_epoch * config.batch_size].reshape(per_epoch, -1) for _ in range(epochs)]
    return np.concatenate(batches)[: config.steps]


def _optimizer(config: ClassifierConfig) -> optax.GradientTransformation:
    """Adam-W with a cosine-decayed learning rate."""
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.steps)
    return optax.adamw(schedule, weight_decay=config.weight_decay)


@functools.partial(jax.jit, static_argnames=("module", "config"))
def _train_step(module: DigitCNN, config: ClassifierConfig, params, opt_state, x, y, step, batch):
    """One update on the softmax cross-entropy of batch ``x[batch]``, freshly dequantised to ``[−1, 1]``."""
    key = jax.random.fold_in(jax.random.key(config.seed), step)
    inputs, _ = image_data.to_model_space(key, x[batch], image_data.LEVELS, "symmetric")

    def loss(p):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(module.apply(p, inputs)[1], y[batch]))

    updates, opt_state = _optimizer(config).update(jax.grad(loss)(params), opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def _train_classifier(module: DigitCNN, config: ClassifierConfig, train_x, train_y):
    """He-normal initialisation, then ``config.steps`` Adam-W steps over fixed-order batches."""
    if len(train_x) < config.batch_size:
        raise ValueError(f"digit_classifier: batch_size {config.batch_size} exceeds the {len(train_x)} training images")
    params = _he_normal_params(module, train_x.shape[1:], config.seed)
    opt_state = _optimizer(config).init(params)
    x, y = jnp.asarray(train_x), jnp.asarray(train_y)
    # One compiled step in a Python loop: inside lax.scan, XLA on CPU runs the convolutions ~25× slower.
    for step, batch in enumerate(_batch_order(len(train_x), config)):
        params, opt_state = _train_step(module, config, params, opt_state, x, y, step, batch)
    return jax.block_until_ready(params)


def _accuracy(net: FeatureNet, x, y, key=None) -> float:
    """Test accuracy at the bin centres, or on one dequantised draw with ``key``."""
    inputs = bin_centres(x) if key is None else image_data.to_model_space(key, x, image_data.LEVELS, "symmetric")[0]
    return float(np.mean(net.predict(inputs) == np.asarray(y)))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def digit_classifier(cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR,
                     config: ClassifierConfig = ClassifierConfig()) -> FeatureNet:
    """The 8×8-digit CNN (:class:`DigitCNN`) as a :class:`FeatureNet`: ``config.feature_dim`` features (128), 10 logits.

    Loaded from ``cache_dir/digit_classifier.{msgpack,json}`` when the cached config, code revision
    and SHA-256 of the training images and labels match; otherwise trained (deterministic: the same
    config gives the same weights on the same platform) and saved, weights first, JSON last.
    ``info`` holds the config, ``data_sha256``, ``train_seconds``, the test accuracy at bin centres
    (``test_accuracy``) and on dequantised inputs (``test_accuracy_dequantised``), and
    ``source`` (``"cache"`` or ``"trained"``).  Inputs: ``(n, 8, 8, 1)`` in model space.
    """
    if not isinstance(config, ClassifierConfig):
        raise ValueError(f"digit_classifier: config must be a ClassifierConfig, got {type(config).__name__}")
    (train_x, train_y), (test_x, test_y) = image_data.load_digits(config.test_fraction, config.split_seed, labels=True)
    module = DigitCNN(config.widths, config.feature_dim, num_classes=10)
    image_shape = tuple(train_x.shape[1:])
    cache_dir = Path(cache_dir)
    weights_path, info_path = cache_dir / f"{_CACHE_NAME}.msgpack", cache_dir / f"{_CACHE_NAME}.json"
    data_hash = _data_hash(train_x, train_y)
    if info_path.exists() and weights_path.exists():
        info = json.loads(info_path.read_text())
        if (info.get("revision"), info.get("config"), info.get("data_sha256")) == (_REVISION, config.to_json(), data_hash):
            params = flax.serialization.msgpack_restore(weights_path.read_bytes())
            return FeatureNet(module, jax.tree.map(jnp.asarray, params), image_shape, module.num_classes,
                              {**info, "source": "cache"})
    start = time.perf_counter()
    params = _train_classifier(module, config, train_x, train_y)
    seconds = time.perf_counter() - start
    net = FeatureNet(module, params, image_shape, module.num_classes)
    info = {"revision": _REVISION, "config": config.to_json(), "data_sha256": data_hash,
            "train_seconds": round(seconds, 2),
            "test_accuracy": _accuracy(net, test_x, test_y),
            "test_accuracy_dequantised": _accuracy(net, test_x, test_y, jax.random.key(config.seed + 1)),
            "jax_version": jax.__version__, "backend": jax.default_backend()}
    cache_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(weights_path, flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, params)))
    _write_atomic(info_path, json.dumps(info, indent=2).encode())
    return dataclasses.replace(net, info={**info, "source": "trained"})


# -- random convolutional features ----------------------------------------------------
def random_conv_features(image_shape, seed: int = 0, *, width: int = 64, num_scales: int | None = None) -> FeatureNet:
    """A fixed random :class:`RandomConvNet` for ``(H, W, C)`` images (``H, W >= 8``, ``C`` 1 or 3), never trained.

    Filters ``N(0, 2/fan_in)`` (He et al. 2015, "Delving deep into rectifiers") from NumPy's
    ``default_rng(seed)``: the same seed gives the same net everywhere.  ``num_scales``
    defaults to as many 2×-downsampled scales as keep the coarsest map at least 2×2, at most 4
    (3 for 8×8 images); the feature dimension is ``num_scales · width``.
    """
    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list)) else ()
    if len(shape) != 3 or not all(isinstance(s, (int, np.integer)) for s in shape) or min(shape[:2], default=0) < 8 \
            or shape[2] not in (1, 3):
        raise ValueError(f"random_conv_features: image_shape must be (H, W, C) with H, W >= 8 and C in (1, 3), "
                         f"got {image_shape!r}")
    check_positive_int(width, "width")
    most = min(4, int(math.log2(min(shape[:2]))))
    num_scales = most if num_scales is None else check_positive_int(num_scales, "num_scales")
    if num_scales > most:
        raise ValueError(f"random_conv_features: num_scales must be at most {most} for {shape[:2]} images, got {num_scales}")
    module = RandomConvNet(width, num_scales)
    params = _he_normal_params(module, shape, seed)
    info = {"seed": seed, "width": width, "num_scales": num_scales, "feature_dim": width * num_scales}
    return FeatureNet(module, params, tuple(int(s) for s in shape), info=info)
