"""Image data: conventions, digits, streams and grids (genjax.data.images), photo patches, user folders and arrays."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import genjax
from genjax.data import folders, images, photos


def test_load_digits_split_is_fixed_and_complete():
    train, test = images.load_digits(test_fraction=0.2, seed=0)
    assert train.shape[1:] == (8, 8, 1) and test.shape[1:] == (8, 8, 1)
    assert len(train) + len(test) == 1797 and len(test) == round(0.2 * 1797)
    assert train.min() == 0 and max(train.max(), test.max()) == images.LEVELS - 1
    again, _ = images.load_digits(test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(train, again)
    other, _ = images.load_digits(test_fraction=0.2, seed=1)
    assert not np.array_equal(train, other)
    # Same multiset of images as the raw data set: compare sorted row sums of flattened pixels.
    from sklearn.datasets import load_digits

    raw = load_digits().data.reshape(-1, 64)
    both = np.concatenate([train, test]).reshape(-1, 64)
    np.testing.assert_array_equal(np.sort(raw @ np.arange(64)), np.sort(both @ np.arange(64)))


def test_dequantised_values_stay_in_their_cell():
    x = np.arange(images.LEVELS).reshape(1, -1).repeat(50, axis=0)
    u = images.dequantize(jax.random.PRNGKey(0), x)
    np.testing.assert_array_equal(np.floor(np.asarray(u, np.float64) * images.LEVELS), x)  # exact in float64


def test_discrete_bits_per_dim_hand_computation():
    # −(log p + log|det| − D log K)/(D ln 2) with log p = −10, log|det| = 3, D = 64, K = 17:
    # (10 − 3 + 64·2.833213344)/(64·0.693147181) = 188.3256540/44.3614196 = 4.245257611.
    np.testing.assert_allclose(images.discrete_bits_per_dim(-10.0, 3.0, 64, 17), 4.245257611, rtol=1e-6)
    # MATH.md §6 for 8-bit data in [−1, 1]: the scaling contributes log|det| = D log 2.
    log_p, d = -1234.5, 3072
    expected = -(log_p + d * math.log(2 / 256)) / (d * math.log(2))
    np.testing.assert_allclose(images.discrete_bits_per_dim(log_p, d * math.log(2.0), d, 256), expected, rtol=1e-6)


@pytest.mark.parametrize("scaling", images.SCALINGS)
def test_uniform_model_scores_log2_levels(scaling):
    """The model 'u is uniform on [0,1)^D', written in y-space, has bpd = log₂ K exactly."""
    x = images.load_digits()[1][:16]
    alpha = 0.05
    y, log_det = images.to_model_space(jax.random.PRNGKey(1), x, scaling=scaling, alpha=alpha)
    if scaling == "symmetric":  # uniform on [−1, 1)^D
        log_p = jnp.full(len(x), -64 * math.log(2.0))
    else:  # density of logit(α + (1−2α)u) for uniform u: Π σ(y)(1 − σ(y))/(1 − 2α)
        s = jax.nn.sigmoid(y.reshape(len(x), -1))
        log_p = jnp.sum(jnp.log(s * (1 - s) / (1 - 2 * alpha)), axis=1)
    bpd = images.discrete_bits_per_dim(log_p, log_det, 64)
    np.testing.assert_allclose(bpd, math.log2(images.LEVELS), atol=2e-5)  # float32 sums of 64 logs


def test_logit_log_det_matches_jacobian_and_inverse():
    x = images.load_digits()[1][:2]
    key = jax.random.PRNGKey(2)
    u = images.dequantize(key, x)
    y, log_det = images.to_model_space(key, x, scaling="logit", alpha=0.05)
    scale = lambda v: jnp.log(0.05 + 0.9 * v) - jnp.log(0.95 - 0.9 * v)  # noqa: E731
    jac = jax.jacfwd(lambda v: scale(v).reshape(-1))(u[0])
    np.testing.assert_allclose(log_det[0], jnp.linalg.slogdet(jac.reshape(64, 64))[1], rtol=1e-5)
    np.testing.assert_allclose(images.to_unit_interval(y, "logit", 0.05), u, atol=1e-5)
    np.testing.assert_allclose(images.to_unit_interval(2 * u - 1, "symmetric"), u, atol=1e-6)


def test_bad_input_raises():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="integers in 0..16"):
        images.dequantize(key, np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="integers in 0..16"):
        images.dequantize(key, np.array([[17]]))
    with pytest.raises(ValueError, match="integers in 0..16"):
        images.dequantize(key, np.array([[np.nan]]))
    with pytest.raises(ValueError, match="scaling"):
        images.to_model_space(key, np.zeros((1, 2), int), scaling="tanh")
    with pytest.raises(ValueError, match="alpha"):
        images.to_model_space(key, np.zeros((1, 2), int), alpha=0.5)
    with pytest.raises(ValueError, match="test_fraction"):
        images.load_digits(test_fraction=1.0)


def test_load_digits_labels_follow_the_same_split():
    (x_train, y_train), (x_test, y_test) = images.load_digits(labels=True)
    train, test = images.load_digits()
    np.testing.assert_array_equal(x_train, train)
    np.testing.assert_array_equal(x_test, test)
    assert y_train.dtype == np.int32 and y_train.shape == (len(train),) and y_test.shape == (len(test),)
    # Same multiset of (image, label) pairs as the raw data set.
    from sklearn.datasets import load_digits

    raw = load_digits()
    pairs = lambda x, y: sorted(a.astype(np.uint8).tobytes() + bytes([b]) for a, b in zip(x, y))  # noqa: E731
    assert pairs(raw.images, raw.target) == pairs(np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test]))


# ----------------------------------------------------------------------------- levels, bins, scaling


def in_symmetric_bins(y, x, levels):
    """Whether each float32 ``y`` lies in the bin ``[2x/K − 1, 2(x+1)/K − 1)`` of its level ``x``, decided exactly:
    ``K·y`` of a float32 is exact in float64, and the bounds become the integers ``2x − K``, ``2x + 2 − K``."""
    ky, x = levels * np.asarray(y, np.float32).astype(np.float64), np.asarray(x, np.int64)
    return (ky >= 2 * x - levels) & (ky < 2 * x + 2 - levels)


@pytest.mark.parametrize("interval", [(0, 1), (-1, 1)])
@pytest.mark.parametrize("levels", [2, 17, 255, 256, 1000])
def test_bin_bounds_are_the_extreme_float32_of_each_bin(levels, interval):
    """Bin k = [n_k/K, n_{k+1}/K) with integers n_k; e·K is exact in float64 for a float32 e."""
    low, high = interval
    first, last = images._bin_bounds(levels, low, high)
    n = low * levels + (high - low) * np.arange(levels + 1)
    scaled = lambda e: levels * e.astype(np.float64)  # noqa: E731
    up, down = np.float32(np.inf), np.float32(-np.inf)
    assert np.all(scaled(first) >= n[:-1]) and np.all(scaled(np.nextafter(first, down)) < n[:-1])
    assert np.all(scaled(last) < n[1:])
    after = np.nextafter(last, up)  # in the next bin, or a subnormal below 0 (XLA reads those as 0)
    assert np.all((scaled(after) >= n[1:]) | ((n[1:] == 0) & (np.abs(after) < np.finfo(np.float32).tiny)))


@pytest.mark.parametrize("levels", [2, 17, 255, 256, 1000])
def test_to_symmetric_stays_in_the_bin_at_the_bin_edges(levels):
    """For v = 0 and v = the largest float32 below 1 (where x + v rounds up to x + 1), y lies in x's bin."""
    x = np.arange(levels)
    for v in (0.0, np.nextafter(np.float32(1), np.float32(0))):
        y = images.to_symmetric(x, levels, np.float32(v))
        assert y.dtype == np.float32 and np.all(in_symmetric_bins(y, x, levels))
        np.testing.assert_array_equal(images.from_symmetric(y, levels), x)


def test_to_symmetric_gives_the_same_values_from_numpy_and_jit():
    """The host stream calls to_symmetric on NumPy arrays; training code on JAX arrays under jit."""
    rng = np.random.default_rng(0)
    for levels in (17, 256):
        x = rng.integers(0, levels, (500, 8, 8, 3))
        v = rng.random(x.shape, dtype=np.float32)
        host = images.to_symmetric(x, levels, v)
        assert isinstance(host, np.ndarray)
        np.testing.assert_array_equal(np.asarray(jax.jit(images.to_symmetric, static_argnums=1)(x, levels, v)), host)
        np.testing.assert_array_equal(images.from_symmetric(host, levels), x)
        np.testing.assert_array_equal(np.asarray(images.from_symmetric(jnp.asarray(host), levels)), x)
        centres = images.to_symmetric(x, levels)  # v = 1/2: 2(x + ½)/K − 1 up to float32 rounding
        np.testing.assert_allclose(centres, 2 * (x + 0.5) / levels - 1, atol=1e-6)


def test_dequantize_keeps_the_top_level_in_its_bin():
    """255 + v rounds up to 256 in float32 for v within 2⁻¹⁷ of 1 (a few times in 10⁶ draws): u must
    still lie in [255/256, 1), i.e. floor(256 u) = 255, exactly in float64."""
    x = np.full(1_000_000, 255)
    u = np.asarray(images.dequantize(jax.random.PRNGKey(0), x, 256), np.float64)
    np.testing.assert_array_equal(np.floor(256 * u), x)
    y = images.to_symmetric(x, 256, np.random.default_rng(1).random(x.shape, dtype=np.float32))
    assert y.max() < 1.0 and np.all(in_symmetric_bins(y, x, 256))


def test_from_symmetric_clips_and_checks():
    np.testing.assert_array_equal(images.from_symmetric(np.array([-3.0, -1.0, 0.0, 0.999, 1.0, 5.0]), 4),
                                  [0, 0, 2, 3, 3, 3])
    with pytest.raises(ValueError, match="NaN"):
        images.from_symmetric(np.array([np.nan]), 4)
    with pytest.raises(ValueError, match=r"noise must lie in \[0, 1\)"):
        images.to_symmetric(np.zeros(2, int), 4, 1.0)
    with pytest.raises(ValueError, match="levels must be >= 2"):
        images.to_symmetric(np.zeros(2, int), 1)


def test_symmetric_model_space_is_to_symmetric_with_the_same_noise():
    x = images.load_digits()[1][:4]
    key = jax.random.PRNGKey(3)
    y, log_det = images.to_model_space(key, x, scaling="symmetric")
    v = jax.random.uniform(key, x.shape)
    np.testing.assert_array_equal(y, images.to_symmetric(jnp.asarray(x), images.LEVELS, v))
    np.testing.assert_allclose(log_det, 64 * math.log(2.0), rtol=1e-6)
    np.testing.assert_array_equal(images.from_symmetric(np.asarray(y), images.LEVELS), x)


# ----------------------------------------------------------------------------- training stream


def test_image_batches_epochs_are_permutations_and_labels_follow():
    n, batch_size = 10, 4
    stack = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 2, 3, 1))  # image i holds level i
    stream = images.image_batches(stack, 3 * np.arange(n), batch_size=batch_size, seed=5)
    batches = [next(stream) for _ in range(5)]  # 20 images: two whole epochs, batches across the epoch end
    for batch in batches:
        assert set(batch) == {"x0", "c"}
        assert batch["x0"].dtype == np.float32 and batch["x0"].shape == (batch_size, 2, 3, 1)
        assert batch["c"].dtype == np.int32 and batch["c"].shape == (batch_size,)
    seen = np.concatenate([images.from_symmetric(b["x0"], 256)[:, 0, 0, 0] for b in batches])
    np.testing.assert_array_equal(np.concatenate([b["c"] for b in batches]), 3 * seen)
    assert sorted(seen[:n]) == list(range(n)) and sorted(seen[n:]) == list(range(n))
    assert not np.array_equal(seen[:n], seen[n:])  # a fresh order each epoch
    again = images.image_batches(stack, 3 * np.arange(n), batch_size=batch_size, seed=5)
    for batch in batches:
        np.testing.assert_array_equal(next(again)["x0"], batch["x0"])
    other = next(images.image_batches(stack, batch_size=batch_size, seed=6))
    assert set(other) == {"x0"} and not np.array_equal(other["x0"], batches[0]["x0"])


def test_image_batches_flip_half_the_images_and_dequantise_into_their_bins():
    """40 000 draws of random (never mirror-symmetric) 3×4×2 images: each batch image must be its
    source image or its mirror image, every value exactly in its level's bin; the
    mirrored fraction is Binomial(40 000, ½)/40 000, sd 0.0025, so |rate − ½| < 0.0125 (5 sd)."""
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (1000, 3, 4, 2), dtype=np.uint8)
    assert np.all(np.any(source != source[:, :, ::-1], axis=(1, 2, 3)))
    stream = images.image_batches(source, np.arange(1000), batch_size=500, seed=1)
    batches = [next(stream) for _ in range(80)]
    y = np.concatenate([b["x0"] for b in batches])
    original = source[np.concatenate([b["c"] for b in batches])]
    assert y.min() >= -1.0 and y.max() < 1.0
    plain = np.all(in_symmetric_bins(y, original, 256), axis=(1, 2, 3))
    mirrored = np.all(in_symmetric_bins(y, original[:, :, ::-1], 256), axis=(1, 2, 3))
    np.testing.assert_array_equal(plain, ~mirrored)
    assert abs(mirrored.mean() - 0.5) < 0.0125
    unflipped = next(images.image_batches(source, np.arange(1000), batch_size=500, seed=1, flip=False))
    np.testing.assert_array_equal(images.from_symmetric(unflipped["x0"], 256), source[unflipped["c"]])


def test_image_batches_checks_its_arguments():
    x = np.zeros((4, 2, 2, 1), np.uint8)
    with pytest.raises(ValueError, match=r"images must be a non-empty integer array \(N, H, W, C\)"):
        images.image_batches(x.astype(np.float32), batch_size=2, seed=0)
    with pytest.raises(ValueError, match=r"images must be a non-empty integer array"):
        images.image_batches(x[..., 0], batch_size=2, seed=0)
    with pytest.raises(ValueError, match=r"integers in 0..16"):
        images.image_batches(x + 17, batch_size=2, seed=0, levels=17)
    with pytest.raises(ValueError, match="labels must be 4 integers"):
        images.image_batches(x, np.zeros(3, int), batch_size=2, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        images.image_batches(x, batch_size=0, seed=0)
    with pytest.raises(ValueError, match="seed"):
        images.image_batches(x, batch_size=2, seed=0.5)


def test_image_batches_train_an_interpolant_through_fit():
    """fit reads one stream batch per step (calls of 2 steps: exactly 4 batches for 4 steps) and the
    per-sample model sees 8×8×1 float32 images with an int32 label (the patch's source photograph)."""
    from genjax import interpolants
    from genjax.data import photos

    (x, sources), _ = photos.load_patches(8, num_train=64, num_test=8, labels=True)
    consumed, traced = [], []

    def counted(stream):
        for batch in stream:
            consumed.append(batch)
            yield batch

    def apply_fn(p, t, x, c):
        traced.append((x.shape, x.dtype, c.shape, c.dtype))
        return (x.reshape(-1) @ p["w"] + p["embed"][c] + t * p["b"]).reshape(x.shape)

    params = {"w": jnp.zeros((64, 64)), "embed": jnp.zeros((len(photos.PHOTOS), 64)), "b": jnp.zeros(64)}
    state, history = genjax.train_interpolant(
        apply_fn, params, interpolants.linear, counted(images.image_batches(x, sources, batch_size=16, seed=0)),
        key=jax.random.PRNGKey(0), optimizer=optax.adam(1e-2), prediction="velocity", num_steps=4, batch_size=16,
        steps_per_call=2, progress=False)
    assert len(consumed) == 4 and all(b["x0"].shape == (16, 8, 8, 1) for b in consumed)
    np.testing.assert_array_equal(history["step"], [1, 2, 3, 4])
    assert np.all(np.isfinite(history["loss"])) and int(state.step) == 4
    assert set(traced) == {((8, 8, 1), np.dtype(np.float32), (), np.dtype(np.int32))}
    assert float(jnp.abs(state.params["w"]).max()) > 0  # trained


# ----------------------------------------------------------------------------- figures


def test_image_grid_layout():
    tiles = (np.arange(5)[:, None, None] * 10 + np.arange(6).reshape(2, 3)).astype(np.uint8) + 1  # 5 tiles 2×3
    grid = images.image_grid(tiles, ncols=2, pad=1)
    assert grid.shape == (3 * 3 + 1, 2 * 4 + 1) and grid.dtype == np.uint8
    covered = np.zeros(grid.shape, bool)
    for i, tile in enumerate(tiles):
        r, q = divmod(i, 2)
        np.testing.assert_array_equal(grid[1 + 3 * r: 3 + 3 * r, 1 + 4 * q: 4 + 4 * q], tile)
        covered[1 + 3 * r: 3 + 3 * r, 1 + 4 * q: 4 + 4 * q] = True
    assert np.all(grid[~covered] == 0)  # padding and the empty sixth cell
    rgb = images.image_grid(np.ones((3, 2, 2, 3), np.float32), ncols=3, pad=2, pad_value=0.5)
    assert rgb.shape == (1 * 4 + 2, 3 * 4 + 2, 3) and rgb.dtype == np.float32
    assert rgb.sum() == 3 * 2 * 2 * 3 + 0.5 * (rgb.size - 3 * 2 * 2 * 3)
    with pytest.raises(ValueError, match="ncols"):
        images.image_grid(tiles, ncols=0)
    with pytest.raises(ValueError, match=r"images must be a non-empty array \(n, H, W, C\)"):
        images.image_grid(tiles[0], ncols=2)


# ----------------------------------------------------------------------------- photo patches


def windows_of(image: np.ndarray, size: int) -> np.ndarray:
    """All ``size × size`` windows of an ``(H, W, C)`` image, flattened: ``(positions, size·size·C)``."""
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size), axis=(0, 1))
    return windows.transpose(0, 1, 3, 4, 2).reshape(-1, size * size * image.shape[-1])


def occurs_in(patch: np.ndarray, image: np.ndarray) -> bool:
    return bool(np.any(np.all(windows_of(image, patch.shape[0]) == patch.reshape(-1), axis=1)))


@pytest.mark.parametrize("size, color", [(8, False), (16, False), (32, True)])
def test_patches_shapes_split_and_balance(size, color):
    (train, s_train), (test, s_test) = photos.load_patches(size, color=color, num_train=190, num_test=41, labels=True)
    channels = 3 if color else 1
    assert train.shape == (190, size, size, channels) and test.shape == (41, size, size, channels)
    assert train.dtype == test.dtype == np.uint8 and s_train.dtype == np.int32
    train_names, test_names = photos.split_photos(color)
    assert set(test_names) == set(photos.TEST_PHOTOS) & set(photos.COLOR_PHOTOS if color else photos.PHOTOS)
    assert not set(train_names) & set(test_names)
    names = np.array(photos.PHOTOS)
    for sources, expected, n in ((s_train, train_names, 190), (s_test, test_names, 41)):
        counts = {name: int(np.sum(names[sources] == name)) for name in expected}
        assert set(names[sources]) == set(expected)  # every photograph of the split, and only those
        assert sum(counts.values()) == n and max(counts.values()) - min(counts.values()) <= 1
    assert train.std() > 20  # not flat: natural images span the range


def test_patches_are_deterministic_and_independent_of_the_other_split():
    train, test = photos.load_patches(8, num_train=100, num_test=30)
    again_train, again_test = photos.load_patches(8, num_train=100, num_test=30)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(test, again_test)
    np.testing.assert_array_equal(photos.load_patches(8, num_train=300, num_test=30)[1], test)
    assert not np.array_equal(photos.load_patches(8, num_train=100, num_test=30, seed=1)[0], train)


def test_patches_are_crops_of_the_photographs():
    """downscale=1: patches are verbatim crops (grayscale of an RGB photo: Pillow's ITU-R 601-2 luma);
    downscale=2: crops of the 2×2 block means rounded half up."""
    import skimage.data
    from PIL import Image

    camera, chelsea = skimage.data.camera()[..., None], skimage.data.chelsea()
    names = np.array(photos.PHOTOS)
    gray, s_gray = photos.load_patches(8, num_train=50, num_test=40, downscale=1, labels=True)[1]
    rgb, s_rgb = photos.load_patches(8, color=True, num_train=50, num_test=40, downscale=1, labels=True)[1]
    luma = np.asarray(Image.fromarray(chelsea).convert("L"))[..., None]
    for patch in gray[names[s_gray] == "camera"][:5]:
        assert occurs_in(patch, camera)
    for patch in gray[names[s_gray] == "chelsea"][:5]:
        assert occurs_in(patch, luma)
    for patch in rgb[names[s_rgb] == "chelsea"][:5]:
        assert occurs_in(patch, chelsea)
    halved = (camera.reshape(256, 2, 256, 2).sum(axis=(1, 3), dtype=np.int64) + 2) // 4
    small, s_small = photos.load_patches(8, num_train=50, num_test=40, labels=True)[1]
    for patch in small[names[s_small] == "camera"][:5]:
        assert occurs_in(patch, halved[..., None].astype(np.uint8))


def test_patches_check_arguments():
    with pytest.raises(ValueError, match="size=100 exceeds the photograph 'page'"):
        photos.load_patches(100)
    with pytest.raises(ValueError, match="num_train must be a positive integer"):
        photos.load_patches(8, num_train=0)
    with pytest.raises(ValueError, match="downscale must be a positive integer"):
        photos.load_patches(8, downscale=1.5)


# ----------------------------------------------------------------------------- user folders and arrays


def save(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_of_grayscale_images_in_sorted_order(tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (3, 5, 4), dtype=np.uint8)
    for name, image in zip(("b.png", "c.PNG", "a.png"), stack):
        save(tmp_path / name, image)
    (tmp_path / "notes.txt").write_text("ignored")
    x, labels, classes = folders.load_image_folder(tmp_path)
    assert x.dtype == np.uint8 and x.shape == (3, 5, 4, 1) and labels is None and classes == ()
    np.testing.assert_array_equal(x[..., 0], stack[[2, 0, 1]])  # a, b, c
    assert folders.load_image_folder(tmp_path, size=(6, 7)).images.shape == (3, 6, 7, 1)
    assert folders.load_image_folder(tmp_path, size=3, mode="RGB").images.shape == (3, 3, 3, 3)


def test_folder_with_class_subfolders_and_modes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (2, 4, 6, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (4, 6), dtype=np.uint8)
    rgba = np.concatenate([rgb[0], np.full((4, 6, 1), 7, np.uint8)], axis=-1)
    save(tmp_path / "dog" / "1.png", gray)
    save(tmp_path / "cat" / "1.png", rgb[0])
    save(tmp_path / "cat" / "2.png", rgb[1])
    save(tmp_path / "emu" / "x.png", rgba)
    (tmp_path / "empty").mkdir()
    x, labels, classes = folders.load_image_folder(tmp_path)
    assert classes == ("cat", "dog", "emu") and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, [0, 0, 1, 2])
    np.testing.assert_array_equal(x[:2], rgb)
    np.testing.assert_array_equal(x[2], np.repeat(gray[..., None], 3, axis=-1))  # grayscale repeated into RGB
    np.testing.assert_array_equal(x[3], rgb[0])  # alpha dropped
    luma = folders.load_image_folder(tmp_path, mode="L").images
    assert luma.shape == (4, 4, 6, 1)
    np.testing.assert_array_equal(luma[0, ..., 0], np.asarray(Image.fromarray(rgb[0]).convert("L")))
    np.testing.assert_array_equal(luma[2, ..., 0], gray)


def test_folder_reads_jpeg(tmp_path):
    from PIL import Image

    image = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (8, 1))
    Image.fromarray(np.stack([image] * 3, axis=-1)).save(tmp_path / "a.jpg", quality=95)
    Image.fromarray(image).save(tmp_path / "b.JPEG", quality=95)
    x = folders.load_image_folder(tmp_path).images
    assert x.shape == (2, 8, 16, 3)
    assert np.abs(x.astype(int) - image[..., None]).max() <= 8  # lossy but close


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        folders.load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no .png/.jpg/.jpeg files in"):
        folders.load_image_folder(tmp_path)
    save(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    save(tmp_path / "b.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"differ in shape.*a\.png is \(4, 4, 1\).*b\.png is \(4, 5, 1\).*size="):
        folders.load_image_folder(tmp_path)
    assert folders.load_image_folder(tmp_path, size=4).images.shape == (2, 4, 4, 1)
    (tmp_path / "c.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"cannot read .*c\.png"):
        folders.load_image_folder(tmp_path, size=4)
    (tmp_path / "c.png").unlink()
    save(tmp_path / "cls" / "d.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="holds image files and class sub-folders"):
        folders.load_image_folder(tmp_path)
    save(tmp_path / "deep" / "e.png", np.full((4, 4), 1000, np.uint16))  # a 16-bit PNG
    with pytest.raises(ValueError, match=r"e\.png is a 'I(;16)?' image \(more than 8 bits per channel\)"):
        folders.load_image_folder(tmp_path / "deep")
    with pytest.raises(ValueError, match="mode must be None, 'L' or 'RGB'"):
        folders.load_image_folder(tmp_path, mode="RGBA")
    with pytest.raises(ValueError, match=r"size must be None, a positive int or a pair"):
        folders.load_image_folder(tmp_path, size=(4, 0))


def test_image_arrays_from_npy_and_npz(tmp_path):
    rng = np.random.default_rng(2)
    stack = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", stack)
    x, labels, classes = folders.load_image_array(tmp_path / "a.npy")
    assert x.shape == (5, 4, 3, 1) and x.dtype == np.uint8 and labels is None and classes == ()
    np.testing.assert_array_equal(x[..., 0], stack)
    rgb = rng.integers(0, 256, (5, 4, 3, 3))  # int64 levels, float labels with integer values
    np.savez(tmp_path / "b.npz", x=rgb, y=np.arange(5.0))
    x, labels, _ = folders.load_image_array(tmp_path / "b.npz")
    np.testing.assert_array_equal(x, rgb)
    assert x.dtype == np.uint8 and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, np.arange(5))
    np.savez(tmp_path / "c.npz", images=stack.astype(np.float32), labels=np.arange(5))
    np.testing.assert_array_equal(folders.load_image_array(tmp_path / "c.npz").images[..., 0], stack)


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.full((2, 3, 3), 0.5)}, r"\['images'\] must hold integer values.*np.round\(255 \* x\)"),
    ({"x": np.full((2, 3, 3), 256)}, r"must hold integers 0..255, got values in \[256, 256\]"),
    ({"x": np.zeros((2, 3, 5, 5))}, r"\(N, H, W, C\) with C = 1 or 3.*channels first\?"),
    ({"x": np.zeros((2, 3, 3)), "images": np.zeros((2, 3, 3))}, r"exactly one of the arrays \('images', 'x'\)"),
    ({"pixels": np.zeros((2, 3, 3))}, r"exactly one of the arrays \('images', 'x'\), found \['pixels'\]"),
    ({"x": np.zeros((2, 3, 3)), "y": np.zeros(3)}, r"\['y'\] must hold one label per image, shape \(2,\)"),
    ({"x": np.zeros((2, 3, 3)), "labels": np.array([0, -1])}, r"\['labels'\] must hold integers >= 0"),
])
def test_image_array_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        folders.load_image_array(tmp_path / "d.npz")


def test_image_array_file_errors(tmp_path):
    with pytest.raises(ValueError, match=r"expected a \.npy or \.npz file"):
        folders.load_image_array(tmp_path / "a.png")
    with pytest.raises(FileNotFoundError, match="no file"):
        folders.load_image_array(tmp_path / "a.npy")
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"cannot read .*o\.npy"):
        folders.load_image_array(tmp_path / "o.npy")
