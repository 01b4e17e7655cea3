"""Natural-image patches cut from the photographs shipped inside scikit-image and scikit-learn (no download).

:data:`PHOTOS` lists the sources: RGB photographs (``skimage.data``: astronaut, coffee, chelsea,
rocket, hubble_deep_field, immunohistochemistry, retina; ``sklearn.datasets.load_sample_image``:
china, flower) and grayscale ones (``skimage.data``: camera, moon, coins, brick, grass, gravel,
clock, page, text, cell).  Colour patches come from the RGB photographs only; grayscale patches
from all of them, RGB converted (after downscaling) by the ITU-R 601-2 luma ``L = 0.299 R +
0.587 G + 0.114 B`` (Pillow's ``convert("L")``, as :func:`genjax.data.folders.load_image_folder` does).

**Split by photograph**: the :data:`TEST_PHOTOS` (chelsea, flower, camera, grass) give only test
patches, all others only training patches, so no test patch overlaps a training patch.

Each photograph is first downscaled by an integer factor (``downscale``, default 2) by area
averaging (the mean of each ``f × f`` block, rounded half up), so that an 8×8 or 16×16 patch
spans 16–32 pixels of the original and holds edges and object parts rather than flat texture.
Every photograph of a split gives the same number of patches (± 1), at uniformly random
positions drawn by ``numpy.random.default_rng`` from ``seed`` (one stream per split, so the test
patches do not depend on ``num_train``); the patches are then shuffled.  The result is the same
on every run for given versions of NumPy and of the JPEG decoder in Pillow (rocket, hubble, retina,
china and flower are JPEG files; the others PNG).
"""

from __future__ import annotations

import functools

import numpy as np

from .._checks import check_positive_int

__all__ = ["PHOTOS", "COLOR_PHOTOS", "TEST_PHOTOS", "split_photos", "load_patches"]

COLOR_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                "china", "flower")
PHOTOS = COLOR_PHOTOS + ("camera", "moon", "coins", "brick", "grass", "gravel", "clock", "page", "text", "cell")
TEST_PHOTOS = ("chelsea", "flower", "camera", "grass")
_SKLEARN_PHOTOS = ("china", "flower")


def split_photos(color: bool = False) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(train, test)`` names of the photographs that :func:`load_patches` cuts for ``color``."""
    names = COLOR_PHOTOS if color else PHOTOS
    return tuple(n for n in names if n not in TEST_PHOTOS), tuple(n for n in names if n in TEST_PHOTOS)


def _read_photo(name: str) -> np.ndarray:
    """The bundled photograph ``name`` as uint8 ``(H, W, C)``."""
    if name in _SKLEARN_PHOTOS:
        from sklearn.datasets import load_sample_image

        image = load_sample_image(f"{name}.jpg")
    else:
        import skimage.data

        image = getattr(skimage.data, name)()
    image = np.asarray(image, np.uint8)
    return image[..., None] if image.ndim == 2 else image


def _area_downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Means of the ``factor × factor`` blocks, rounded half up (rows and columns past a multiple of ``factor`` dropped)."""
    h, w, c = image.shape[0] // factor, image.shape[1] // factor, image.shape[2]
    blocks = image[: h * factor, : w * factor].reshape(h, factor, w, factor, c).sum(axis=(1, 3), dtype=np.uint32)
    area = factor * factor
    return ((blocks + area // 2) // area).astype(np.uint8)


@functools.lru_cache(maxsize=64)
def _photo(name: str, downscale: int, color: bool) -> np.ndarray:
    """Photograph ``name`` downscaled, with 3 channels (``color``) or 1 (luma), read-only."""
    from PIL import Image

    image = _area_downscale(_read_photo(name), downscale)
    if not color and image.shape[-1] == 3:
        image = np.asarray(Image.fromarray(image).convert("L"))[..., None]
    image.setflags(write=False)
    return image


def _cut(photo: np.ndarray, count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` patches ``(count, size, size, C)`` at uniformly random positions of ``photo``."""
    top = rng.integers(0, photo.shape[0] - size + 1, count)
    left = rng.integers(0, photo.shape[1] - size + 1, count)
    windows = np.lib.stride_tricks.sliding_window_view(photo, (size, size), axis=(0, 1))  # (.., .., C, size, size)
    return windows[top, left].transpose(0, 2, 3, 1)


def _patches(names, num: int, size: int, downscale: int, color: bool, rng: np.random.Generator):
    """``num`` shuffled patches from ``names`` (equal shares) and the index in :data:`PHOTOS` of each one's source."""
    counts = np.full(len(names), num // len(names))
    counts[: num % len(names)] += 1
    patches = np.concatenate([_cut(_photo(n, downscale, color), k, size, rng) for n, k in zip(names, counts)])
    sources = np.repeat([PHOTOS.index(n) for n in names], counts).astype(np.int32)
    order = rng.permutation(num)
    return patches[order], sources[order]


def load_patches(size: int = 16, *, color: bool = False, num_train: int = 20_000, num_test: int = 5_000,
                 seed: int = 0, downscale: int = 2, labels: bool = False):
    """``(train, test)`` uint8 patches ``(N, size, size, C)`` (NHWC, ``C = 3`` if ``color`` else 1), levels ``0..255``.

    Patches of the training photographs and of the :data:`TEST_PHOTOS` (see the module doc;
    :func:`split_photos` names them), from photographs downscaled by ``downscale``.
    ``labels=True`` returns ``((x_train, s_train), (x_test, s_test))`` with each patch's source
    photograph as an int32 index into :data:`PHOTOS`.
    """
    size = check_positive_int(size, "size")
    num_train = check_positive_int(num_train, "num_train")
    num_test = check_positive_int(num_test, "num_test")
    downscale = check_positive_int(downscale, "downscale")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    train_names, test_names = split_photos(color)
    for name in train_names + test_names:
        h, w = _photo(name, downscale, bool(color)).shape[:2]
        if min(h, w) < size:
            raise ValueError(f"size={size} exceeds the photograph {name!r} ({h}×{w} after downscale={downscale}); "
                             "use a smaller size or downscale")
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    train = _patches(train_names, num_train, size, downscale, bool(color), train_rng)
    test = _patches(test_names, num_test, size, downscale, bool(color), test_rng)
    return (train, test) if labels else (train[0], test[0])
