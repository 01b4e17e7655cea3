"""Autoregressive models (MATH.md §15): MADE, PixelCNN, causal transformer, Markov chain; likelihood, MLE, sampling.

Oracles: (a) causality — the Jacobian of logit i with respect to the (continuous, one-hot-shaped)
input j is exactly zero for j ≥ i in raster order and non-zero for some j < i; (b) the first-order
Markov chain's closed-form MLE (empirical initial and transition frequencies, counted here with
NumPy) zeroes the gradient of the training loss, and the loss there is the empirical conditional
entropy; (c) ancestral-sampling frequencies against the exact joint ``Π_i softmax(logits_i/T)``
(χ² test); (d) the uniform model scores ``log₂ K`` bits/dim and perplexity ``K`` exactly.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.tree_util import Partial

from genjax.data.images import LEVELS, load_digits
from genjax.models.autoregressive import (
    autoregressive_objective,
    bits_per_dim,
    log_likelihood,
    markov_chain_mle,
    perplexity,
    sample_autoregressive,
    train_autoregressive,
)
from genjax.nets.autoregressive import MADE, CausalTransformer, MarkovChain, PixelCNN, conv_mask

EVENT, K = (3, 3, 1), 3  # D = 9 coordinates for the Jacobian checks
NETS = {
    "made": MADE(EVENT, K, hidden=(16, 16), activation=jnp.tanh),  # smooth: no dead units hide a connection
    "pixelcnn": PixelCNN(K, features=8, num_layers=1, first_kernel=3),
    "transformer": CausalTransformer(EVENT, K, width=8, depth=1, heads=2),
    "markov": MarkovChain(EVENT, K),
}


def random_params(net, x, seed=0):
    """Random parameters of ``net``'s structure, drawn with NumPy (XLA:CPU takes seconds to compile Flax's
    truncated-normal initialisers): kernels ``N(0, 1/fan_in)``, biases ``N(0, 0.1²)``, LayerNorm scales
    ``1 + N(0, 0.1²)``."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name, shape = jax.tree_util.keystr(path[-1:]), leaf.shape
        if "scale" in name:
            return jnp.asarray(1.0 + 0.1 * rng.standard_normal(shape), jnp.float32)
        std = 0.1 if "bias" in name else 1.0 / math.sqrt(math.prod(shape[:-1]) or 1)
        return jnp.asarray(std * rng.standard_normal(shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, jax.eval_shape(net.init, jax.random.key(0), x))


def chi2_stat(counts, probs):
    expected = counts.sum() * probs
    return float(np.sum((counts - expected) ** 2 / expected))


# ----------------------------------------------------------------------------- (a) causality
@pytest.mark.parametrize("name", NETS)
def test_logit_i_depends_only_on_inputs_before_i(name):
    """J[i, j] = Σ |∂ logits_i / ∂ input_j| over levels: exactly 0 for j ≥ i; > 0 for the j < i the net must use."""
    net = NETS[name]
    x_int = jax.random.randint(jax.random.key(0), EVENT, 0, K)
    params = random_params(net, x_int, 1)
    soft = jax.random.uniform(jax.random.key(3), (*EVENT, K), minval=0.2, maxval=1.0)  # a continuous input

    @jax.jit
    def jacobian_and_logits(params, soft, x_int):
        return jax.jacfwd(net.apply, argnums=1)(params, soft), net.apply(params, x_int), net.apply(
            params, jax.nn.one_hot(x_int, K))

    jac, from_int, from_one_hot = jacobian_and_logits(params, soft, x_int)
    dep = np.abs(np.asarray(jac)).sum(axis=(3, 7)).reshape(9, 9)
    assert np.all(dep[np.triu_indices(9)] == 0.0)  # no j >= i, in particular not j = i (type-A masking)
    row, col = np.divmod(np.arange(9), 3)
    for i in range(1, 9):
        if name in ("made", "transformer"):  # full connectivity: every j < i is used
            assert np.all(dep[i, :i] > 0), (i, dep[i])
        elif name == "markov":  # exactly order 1
            assert dep[i, i - 1] > 0 and np.all(dep[i, :i - 1] == 0), (i, dep[i])
        else:  # PixelCNN sees the left neighbour and the pixel above
            assert (col[i] == 0 or dep[i, i - 1] > 0) and (row[i] == 0 or dep[i, i - 3] > 0), (i, dep[i])
    # integer levels are encoded as the one-hot rows they stand for
    np.testing.assert_allclose(from_int, from_one_hot, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- (b) Markov-chain MLE
PI = np.array([0.5, 0.3, 0.2])
P = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.25, 0.25, 0.5]])


def markov_data(n, d, seed):
    rng = np.random.default_rng(seed)
    x = np.empty((n, d), np.int32)
    x[:, 0] = rng.choice(3, n, p=PI)
    for i in range(1, d):
        u = rng.random(n)[:, None]
        x[:, i] = (u > np.cumsum(P[x[:, i - 1]], axis=1)).sum(1)
    return x


@pytest.fixture(scope="module")
def chain():
    x = markov_data(4000, 6, 0)
    n0 = np.bincount(x[:, 0], minlength=3).astype(float)
    nkl = np.zeros((3, 3))
    np.add.at(nkl, (x[:, :-1].ravel(), x[:, 1:].ravel()), 1.0)
    return x, n0, nkl


def test_markov_mle_is_the_empirical_frequencies_and_zeroes_the_loss_gradient(chain):
    """π̂ = N_k/n, P̂ = N_kl/N_k· (counted with NumPy); ∇loss(π̂, P̂) = 0; loss = empirical cond. entropy / D."""
    x, n0, nkl = chain
    net = MarkovChain((6,), 3)
    mle = markov_chain_mle(x, 3)
    np.testing.assert_allclose(np.exp(mle["params"]["initial"]), n0 / n0.sum(), rtol=1e-6)
    np.testing.assert_allclose(np.exp(mle["params"]["transition"]), nkl / nkl.sum(1, keepdims=True), rtol=1e-6)
    loss_fn = autoregressive_objective(net.apply)
    grad = jax.jit(jax.grad(lambda p: loss_fn(p, jnp.asarray(x), None)[0]))
    g = np.concatenate([np.ravel(v) for v in jax.tree.leaves(grad(mle))])
    # Each component is (1/(nD)) Σ (p − 1[·]) over ≤ nD terms of size ≤ 1: float32 rounding ~1e-7 relative.
    assert np.max(np.abs(g)) < 2e-7, np.max(np.abs(g))
    moved = jax.tree.map(lambda p: p + 0.1 * (jnp.arange(p.size).reshape(p.shape) % 3), mle)  # off the optimum
    assert np.max(np.abs(np.concatenate([np.ravel(v) for v in jax.tree.leaves(grad(moved))]))) > 1e-2
    entropy = -(n0 @ np.log(n0 / n0.sum()) + np.sum(nkl * np.log(nkl / nkl.sum(1, keepdims=True)))) / x.size
    loss, aux = loss_fn(mle, jnp.asarray(x), None)
    np.testing.assert_allclose(float(loss), entropy, rtol=1e-6)
    np.testing.assert_allclose(float(aux["bits_per_dim"]), entropy / math.log(2), rtol=1e-6)
    # and P̂ estimates P: each row from N_k· ≥ ~4000 steps, s.e. sqrt(P(1 − P)/N_k·) ≤ 0.008; 4 s.e. bound
    se = np.sqrt(P * (1 - P) / nkl.sum(1, keepdims=True))
    assert np.all(np.abs(nkl / nkl.sum(1, keepdims=True) - P) < 4 * se)


def test_made_trained_briefly_reaches_the_markov_mle(chain):
    """MADE (which can represent the chain) trained by maximum likelihood reaches the chain MLE's bits/dim.

    On 4000 sequences of length 6 the chain MLE's training bits/dim bounds MADE's from below up to
    overfitting, ≲ #params/(2 n D ln 2) = 906/(2 · 24000 · ln 2) ≈ 0.03 bits; measured after 300 Adam steps:
    MADE 1.4260, chain MLE 1.4269 bits/dim (start 1.60).
    """
    x, _, _ = chain
    net = MADE((6,), 3, hidden=(24,))
    state, hist = train_autoregressive(net.apply, random_params(net, x[0]), x, key=jax.random.key(1),
                                       optimizer=optax.adam(3e-2), num_steps=300, batch_size=512,
                                       steps_per_call=300, ema_decay=0.0, progress=False)
    made = float(jnp.mean(bits_per_dim(Partial(net.apply, state.params), x)))
    chain_bpd = float(jnp.mean(bits_per_dim(Partial(MarkovChain((6,), 3).apply, markov_chain_mle(x, 3)), x)))
    assert chain_bpd - 0.03 < made < chain_bpd + 0.02, (made, chain_bpd)
    assert hist["bits_per_dim"][0] > chain_bpd + 0.05  # it did learn (start: near log2 3 = 1.585)


# ----------------------------------------------------------------------------- (c) sampling
def joint_of(net, params, d, temperature):
    """The exact joint Π_i softmax(logits_i(x)/T)[x_i] on all K^d sequences (the model's own conditionals)."""
    cells = np.array(list(itertools.product(range(K), repeat=d)), np.int32)
    logits = np.asarray(net.apply(params, jnp.asarray(cells)), np.float64) / temperature
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return cells, np.exp(np.take_along_axis(log_p, cells[..., None], -1)[..., 0].sum(1))


def test_sample_frequencies_match_the_models_joint():
    """At T = 1 and T = 0.5, over all 27 sequences of D = 3, K = 3, the frequencies of 20 000 samples of a random
    MADE match the exact joint (χ², 26 dof: a true sampler exceeds 60 with probability 2·10⁻⁴; 4 checks); for
    the Markov chain the joint is π_T(x_0) P_T(x_0, x_1) P_T(x_1, x_2) with π_T ∝ π^{1/T}, P_T ∝ P^{1/T} row-wise
    (written out here)."""
    n = 20_000
    made = MADE((3,), K, hidden=(8, 8))
    params = jax.tree.map(lambda p: 3.0 * p, random_params(made, jnp.zeros(3, jnp.int32), 4))
    chain = MarkovChain((3,), K)
    chain_params = {"params": {"initial": jnp.log(PI), "transition": jnp.log(P)}}
    cells = np.array(list(itertools.product(range(K), repeat=3)))
    made_at_1 = joint_of(made, params, 3, 1.0)[1]
    for temperature in (1.0, 0.5):
        pt, qt = PI ** (1 / temperature), P ** (1 / temperature)
        pt, qt = pt / pt.sum(), qt / qt.sum(1, keepdims=True)
        exact_chain = pt[cells[:, 0]] * qt[cells[:, 0], cells[:, 1]] * qt[cells[:, 1], cells[:, 2]]
        for net, p, exact in [(made, params, joint_of(made, params, 3, temperature)[1]),
                              (chain, chain_params, exact_chain)]:
            s, stats = sample_autoregressive(Partial(net.apply, p), jax.random.key(5), (n, 3),
                                             temperature=temperature)
            assert stats["nfe"] == 3 and s.dtype == jnp.int32
            counts = np.bincount(np.asarray(s) @ np.array([9, 3, 1]), minlength=27)
            assert chi2_stat(counts, exact) < 60.0, (type(net).__name__, temperature, chi2_stat(counts, exact))
            if net is made:  # power: the joint is far from uniform, and T = 0.5 far from T = 1 (measured χ² > 4·10⁴)
                assert chi2_stat(counts, np.full(27, 1 / 27)) > 1000
                assert temperature == 1.0 or chi2_stat(counts, made_at_1) > 1000


def test_completion_samples_the_conditional_and_chunks_do_not_change_samples():
    """Keeping x_0, x_1 and sampling x_2 gives x_2 ~ P[x_1, ·] (χ², 2 dof per row, < 20 fails w.p. 5·10⁻⁵);
    chunked sampling returns the same samples (per-sample keys)."""
    model = Partial(MarkovChain((3,), K).apply, {"params": {"initial": jnp.log(PI), "transition": jnp.log(P)}})
    n = 6000
    given = np.stack([np.zeros(n, np.int32), np.arange(n, dtype=np.int32) % 3, np.zeros(n, np.int32)], 1)
    s, stats = sample_autoregressive(model, jax.random.key(6), x_init=given, num_given=2)
    s = np.asarray(s)
    assert stats["nfe"] == 1 and np.array_equal(s[:, :2], given[:, :2])
    for prev in range(3):
        counts = np.bincount(s[given[:, 1] == prev, 2], minlength=3)
        assert chi2_stat(counts, P[prev]) < 20.0, (prev, counts)
    chunked, _ = sample_autoregressive(model, jax.random.key(6), x_init=given, num_given=2, chunk_size=2500)
    np.testing.assert_array_equal(chunked, s)


# ----------------------------------------------------------------------------- (d) uniform model
@pytest.fixture(scope="module")
def digits():
    return load_digits()[1][:32]


@pytest.mark.parametrize("net", [MADE((8, 8, 1), LEVELS, hidden=(16,), zero_init=True), MarkovChain((8, 8, 1), LEVELS)],
                         ids=["made", "markov"])
def test_uniform_model_scores_log2_levels(net, digits):
    """A zero-initialised read-out (MADE) and the initial Markov chain are the uniform model: bits/dim =
    log₂ 17, perplexity = 17, loss = ln 17 nats/dim, log p = −64 ln 17 on the 8×8 digits.

    Float32 sums of 64 (log p) and 32 · 64 (loss) terms: relative rounding below 1e-5."""
    params = jax.jit(net.init)(jax.random.key(0), digits[0])
    model = Partial(net.apply, params)
    np.testing.assert_allclose(bits_per_dim(model, digits), math.log2(LEVELS), rtol=1e-5)
    np.testing.assert_allclose(log_likelihood(model, digits), -64 * math.log(LEVELS), rtol=1e-5)
    np.testing.assert_allclose(float(perplexity(model, digits)), LEVELS, rtol=1e-5)
    loss, aux = jax.jit(autoregressive_objective(net.apply))(params, jnp.asarray(digits), None)
    np.testing.assert_allclose([float(loss), float(aux["bits_per_dim"])], [math.log(LEVELS), math.log2(LEVELS)],
                               rtol=1e-5)


# ----------------------------------------------------------------------------- errors
def test_bad_inputs_raise_clear_errors():
    net = MarkovChain((3,), K)
    model = Partial(net.apply, random_params(net, jnp.zeros(3, jnp.int32)))
    x = jnp.zeros((2, 3), jnp.int32)
    with pytest.raises(ValueError, match="integer batch"):
        log_likelihood(model, x.astype(jnp.float32))
    with pytest.raises(ValueError, match="levels"):
        log_likelihood(model, x + 3)
    with pytest.raises(ValueError, match="logits of shape"):
        log_likelihood(Partial(lambda p, x: x.astype(jnp.float32), None), x)
    with pytest.raises(ValueError, match="temperature"):
        sample_autoregressive(model, jax.random.key(0), (2, 3), temperature=0.0)
    with pytest.raises(ValueError, match="num_given"):
        sample_autoregressive(model, jax.random.key(0), x_init=x, num_given=4)
    with pytest.raises(ValueError, match="mask_type"):
        conv_mask(3, 1, 1, "C")
    with pytest.raises(ValueError, match="one-hot rows"):
        jax.eval_shape(MADE((3,), K).init, jax.random.key(0), jnp.zeros(3))
