"""User images as uint8 NHWC arrays: a folder of PNG/JPEG files (optionally one sub-folder per class) or a NumPy file.

Both loaders return an :class:`ImageSet` ``(images, labels, classes)``: ``images`` uint8 ``(N, H,
W, C)`` with ``C = 1`` (grayscale) or ``3`` (RGB), levels ``0..255`` (ready for
:func:`genjax.data.images.image_batches`), ``labels`` int32 ``(N,)`` or ``None``, ``classes`` the
class names (``labels`` index them) or ``()``.  Files are read with Pillow.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "ImageSet", "load_image_folder", "load_image_array"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GRAY_MODES = ("1", "L", "LA")
_WIDE_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")  # more than 8 bits per channel
_IMAGE_KEYS, _LABEL_KEYS = ("images", "x"), ("labels", "y")


class ImageSet(NamedTuple):
    """``images`` uint8 ``(N, H, W, C)``; ``labels`` int32 ``(N,)`` or ``None``; ``classes``: the labels' names or ``()``."""

    images: np.ndarray
    labels: np.ndarray | None
    classes: tuple[str, ...]


# ----------------------------------------------------------------------------- folders


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and _image_files(p))


def _check_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, (int, np.integer)) else size
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and
            all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in pair)):
        raise ValueError(f"size must be None, a positive int or a pair (height, width) of positive ints, got {size!r}")
    return int(pair[0]), int(pair[1])


def _read_image(file: Path, mode: str | None, size: tuple[int, int] | None) -> np.ndarray:
    """``file`` as uint8 ``(H, W, C)``: in ``mode`` (``"L"``/``"RGB"``), or grayscale/RGB as stored (``mode=None``)."""
    from PIL import Image

    try:
        with Image.open(file) as image:
            image.load()
            if image.mode in _WIDE_MODES:
                raise ValueError(f"load_image_folder: {file} is a {image.mode!r} image (more than 8 bits per "
                                 "channel), which is not supported; convert it to 8-bit grayscale or RGB")
            target = mode or ("L" if image.mode in _GRAY_MODES else "RGB")
            image = image.convert(target)
            if size is not None:
                image = image.resize((size[1], size[0]), Image.Resampling.BICUBIC)
            array = np.asarray(image, np.uint8)
    except (OSError, SyntaxError) as err:  # Pillow reports broken files as either
        raise ValueError(f"load_image_folder: cannot read {file}: {err}") from err
    return array[..., None] if array.ndim == 2 else array


def load_image_folder(path, size=None, mode: str | None = None) -> ImageSet:
    """Every PNG/JPEG file in the folder ``path``, or in its sub-folders, one per class, as an :class:`ImageSet`.

    With sub-folders, ``labels`` are the sorted sub-folder indices and ``classes`` their names
    (files directly in ``path`` are then not allowed); without, ``labels`` is ``None``.  Files
    are taken in sorted order; hidden files and other suffixes are ignored.

    Args:
      size: ``None`` (all images must share one shape), ``s`` or ``(height, width)``: every image
        is resized to it (Pillow bicubic, antialiased when shrinking; the aspect ratio is not kept).
      mode: ``None``: one channel if every image is grayscale, otherwise three (grayscale
        images repeated into RGB, alpha dropped); ``"L"``: one channel, colour converted by the
        ITU-R 601-2 luma ``0.299 R + 0.587 G + 0.114 B``; ``"RGB"``: three channels.
    """
    if mode not in (None, "L", "RGB"):
        raise ValueError(f"mode must be None, 'L' or 'RGB', got {mode!r}")
    size = _check_size(size)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"load_image_folder: {str(root)!r} is not a directory")
    files, folders = _image_files(root), _class_folders(root)
    if files and folders:
        raise ValueError(f"load_image_folder: {root} holds image files and class sub-folders with images "
                         f"({', '.join(f.name for f in folders)}); put every image in a class sub-folder or none")
    if not files and not folders:
        raise ValueError(f"load_image_folder: no {'/'.join(IMAGE_SUFFIXES)} files in {root} or its sub-folders")
    groups = [files] if files else [_image_files(f) for f in folders]
    paths = [file for group in groups for file in group]
    arrays = [_read_image(file, mode, size) for file in paths]
    if mode is None and len({a.shape[-1] for a in arrays}) > 1:
        arrays = [np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a for a in arrays]
    shapes: dict[tuple, Path] = {}
    for array, file in zip(arrays, paths):
        shapes.setdefault(array.shape, file)
    if len(shapes) > 1:
        (shape_a, file_a), (shape_b, file_b) = list(shapes.items())[:2]
        raise ValueError(f"load_image_folder: images differ in shape ((H, W, C)): {file_a} is {shape_a}, {file_b} is "
                         f"{shape_b}; pass size=(height, width) to resize them all")
    if files:
        return ImageSet(np.stack(arrays), None, ())
    labels = np.repeat(np.arange(len(groups), dtype=np.int32), [len(g) for g in groups])
    return ImageSet(np.stack(arrays), labels, tuple(f.name for f in folders))


# ----------------------------------------------------------------------------- arrays


def _integer_values(a: np.ndarray, name: str, low: int, high: int | None) -> np.ndarray:
    """``a`` if it holds integer values in ``low..high`` (``high=None``: unbounded), else ``ValueError``."""
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)) or a.size == 0:
        raise ValueError(f"{name} must be a non-empty integer array, got dtype {a.dtype} and shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating) and not (np.all(np.isfinite(a)) and np.all(a == np.round(a))):
        raise ValueError(f"{name} must hold integer values, got non-integer floats in [{a.min()}, {a.max()}]"
                         + ("; for images in [0, 1] store np.round(255 * x)" if a.min() >= 0 and a.max() <= 1 else ""))
    if a.min() < low or (high is not None and a.max() > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must hold integers {bounds}, got values in [{a.min()}, {a.max()}]")
    return a


def _as_images(a: np.ndarray, name: str) -> np.ndarray:
    """``a`` ``(N, H, W, C)`` with ``C ∈ {1, 3}`` or ``(N, H, W)`` as uint8 NHWC."""
    a = a[..., None] if a.ndim == 3 else a
    if a.ndim != 4 or a.shape[-1] not in (1, 3):
        hint = " (channels first? use np.transpose(x, (0, 2, 3, 1)))" if a.ndim == 4 and a.shape[1] in (1, 3) else ""
        raise ValueError(f"{name} must be images (N, H, W, C) with C = 1 or 3, or (N, H, W); got shape {a.shape}{hint}")
    return _integer_values(a, name, 0, 255).astype(np.uint8)


def _read_arrays(file: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``.npy`` (under ``"images"``) or ``.npz`` file, read without pickles."""
    try:
        if file.suffix.lower() == ".npy":
            return {"images": np.load(file, allow_pickle=False)}
        with np.load(file, allow_pickle=False) as arrays:
            return {key: arrays[key] for key in arrays.files}
    except (OSError, EOFError, ValueError) as err:  # missing/broken file, pickled object arrays
        raise ValueError(f"load_image_array: cannot read {file}: {err}") from err


def _one_key(arrays: dict, keys: tuple[str, str], file: Path, required: bool) -> str | None:
    found = [k for k in keys if k in arrays]
    if len(found) > 1 or (required and not found):
        raise ValueError(f"load_image_array: {file} must hold {'exactly' if required else 'at most'} one of the arrays "
                         f"{keys}, found {sorted(arrays)}")
    return found[0] if found else None


def load_image_array(path) -> ImageSet:
    """Images (and labels) from a ``.npy`` file (images only) or an ``.npz`` file, as an :class:`ImageSet`.

    An ``.npz`` holds the images under ``"images"`` or ``"x"`` and optionally one label per
    image under ``"labels"`` or ``"y"``.  Images are ``(N, H, W, C)`` with ``C = 1`` or ``3``
    (NHWC) or ``(N, H, W)`` (a channel axis is added), of dtype uint8 or any integer-valued
    dtype in ``0..255``; labels are integers ``>= 0``.  ``classes`` is ``()``.
    """
    file = Path(path).expanduser()
    if file.suffix.lower() not in (".npy", ".npz"):
        raise ValueError(f"load_image_array: expected a .npy or .npz file, got {str(file)!r}")
    if not file.is_file():
        raise FileNotFoundError(f"load_image_array: no file {str(file)!r}")
    arrays = _read_arrays(file)
    image_key = _one_key(arrays, _IMAGE_KEYS, file, required=True)
    label_key = _one_key(arrays, _LABEL_KEYS, file, required=False)
    images = _as_images(arrays[image_key], f"{file}[{image_key!r}]")
    if label_key is None:
        return ImageSet(images, None, ())
    labels, name = arrays[label_key], f"{file}[{label_key!r}]"
    if labels.shape != (len(images),):
        raise ValueError(f"{name} must hold one label per image, shape ({len(images)},), got {labels.shape}")
    return ImageSet(images, _integer_values(labels, name, 0, None).astype(np.int32), ())
