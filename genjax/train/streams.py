"""Data sources for ``fit``: in-memory arrays, traceable samplers and host streams.

``data`` is one of

* an **array** ``(N, ...)`` or a pytree (tuple, list, dict) of arrays sharing ``N``: put on
  device once, minibatches drawn by index from the step key inside the compiled step;
* a **sampler**: any callable, used as ``data(key, batch_size) -> batch`` (jax-traceable);
* a **stream**: any other object with ``__iter__`` (an iterator, a generator, a grain
  ``DataLoader``, a ``tf.data``/torch loader yielding NumPy arrays) — not callable, not
  array-like (``__array__``), not a str or a tuple/list/dict. ``fit`` calls ``iter(data)`` once; every ``next`` is one
  batch: a NumPy array or a pytree of them, ``(batch_size, ...)`` rows per process.

A stream is read by a background thread (``Prefetcher``) that pulls the batches of one
compiled call, stacks them to ``(num_steps_in_call, batch, ...)`` and puts them on device
(``jax.make_array_from_process_local_data`` with the batch sharded over the mesh's
``"data"`` axis), a few calls ahead of training.
"""

from __future__ import annotations

import itertools
import numbers
import queue
import threading
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._checks import check_batch_tree
from .parallel import DATA_AXIS, replicated

__all__ = ["is_stream", "DataSource", "Stream", "Prefetcher", "prepare_data"]


def is_stream(data) -> bool:
    """True when ``data`` is a host stream of batches (see the module doc), not arrays or a sampler."""
    if callable(data) or hasattr(data, "__array__") or isinstance(data, (tuple, list, Mapping, str, bytes)):
        return False
    return hasattr(data, "__iter__")


# ----------------------------------------------------------------------------- streams


class Prefetcher:
    """Builds the stacked batches of successive calls in a background thread.

    ``lengths`` are the steps of each call; ``build(batches, first_step)`` stacks one call's
    batches and puts them on device. At most ``depth`` built calls wait in a bounded queue.
    ``get()`` returns the next call's batches — fewer than planned if the stream ran out
    during that call — and ``None`` once it has run out; an exception raised while reading
    or building is re-raised by ``get()``. ``close()`` stops the thread.
    """

    def __init__(self, iterator, lengths, build: Callable[[list, int], Any], start: int, depth: int):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(iterator, list(lengths), build, start), daemon=True)
        self._thread.start()

    def _run(self, iterator, lengths, build, step):
        try:
            for num in lengths:
                batches = []
                while len(batches) < num and not self._stop.is_set():
                    try:
                        batches.append(next(iterator))
                    except StopIteration:
                        break
                if self._stop.is_set():
                    return
                if batches:
                    self._put(build(batches, step))
                if len(batches) < num:
                    self._put(None)
                    return
                step += num
        except Exception as err:  # handed to the consumer, which re-raises it
            self._put(err)

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                pass

    def get(self):
        item = self._queue.get()
        if isinstance(item, Exception):
            raise item
        return item

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Stream:
    """A host iterator of batches, checked on its first batch and read in calls of several steps.

    Each process's iterator yields its local share of the global batch: ``batch_size /
    jax.process_count()`` rows under a ``mesh`` (the whole batch on one process). ``spec`` is
    the global batch's shape and dtype (what ``loss_fn`` receives).
    """

    def __init__(self, data, batch_size: int, mesh: Mesh | None):
        iterator = iter(data)
        try:
            first = next(iterator)
        except StopIteration:
            raise ValueError("data: the iterator yielded no batch") from None
        self.iterator = itertools.chain([first], iterator)
        processes = 1 if mesh is None else jax.process_count()
        if batch_size % processes:
            raise ValueError(f"batch_size={batch_size} must be divisible by the {processes} processes")
        local = batch_size // processes
        share = f" (batch_size / {processes} processes)" if processes > 1 else ""
        first = jax.tree.map(lambda leaf: leaf if isinstance(leaf, (numbers.Number, jax.Array)) else np.asarray(leaf),
                             first)
        check_batch_tree(f"data (the iterator's first batch{share})", first, size=local)
        leaves, self.treedef = jax.tree.flatten(first)
        self.shapes = [np.shape(leaf) for leaf in leaves]
        self.dtypes = [jax.dtypes.canonicalize_dtype(np.asarray(leaf).dtype) for leaf in leaves]
        self.batch_size = batch_size
        self.sharding = None if mesh is None else NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))
        self.spec = self.treedef.unflatten(
            [jax.ShapeDtypeStruct((batch_size, *s[1:]), d) for s, d in zip(self.shapes, self.dtypes)]
        )

    def _build(self, batches: list, first_step: int):
        """Stack ``batches`` (those of steps ``first_step + 1, ...``) to ``(num, batch, ...)`` on device."""
        columns = [[] for _ in self.shapes]
        for i, batch in enumerate(batches):
            leaves, treedef = jax.tree.flatten(batch)
            shapes = [np.shape(leaf) for leaf in leaves]
            if treedef != self.treedef or shapes != self.shapes:
                raise ValueError(
                    f"data: the batch for step {first_step + i + 1} has structure {treedef} and shapes {shapes}, "
                    f"unlike the first batch ({self.treedef}, {self.shapes})"
                )
            for column, leaf in zip(columns, leaves):
                column.append(leaf)
        stacked = [np.stack(column).astype(dtype, copy=False) for column, dtype in zip(columns, self.dtypes)]
        if self.sharding is None:
            placed = jax.device_put(stacked)
        else:
            placed = [
                jax.make_array_from_process_local_data(self.sharding, a, (a.shape[0], self.batch_size, *a.shape[2:]))
                for a in stacked
            ]
        return self.treedef.unflatten(placed)

    def prefetch(self, lengths, start: int, depth: int) -> Prefetcher:
        """A started ``Prefetcher`` over the calls ``lengths`` from global step ``start``."""
        return Prefetcher(self.iterator, lengths, self._build, start, depth)


# ----------------------------------------------------------------------------- all sources


class DataSource(NamedTuple):
    """``draw(key, arrays, x) -> batch`` is pure and traceable: ``x`` is the stream's batch for
    the step (``None`` for arrays and samplers). ``arrays`` are the device arrays sampled by
    index (or ``None``); ``spec`` is the batch's shape and dtype; ``stream`` is set for streams."""

    draw: Callable
    arrays: Any
    spec: Any
    stream: Stream | None


def prepare_data(data, batch_size: int, *, replace: bool, mesh: Mesh | None) -> DataSource:
    """Check ``data`` eagerly and return how each step draws its batch (see the module doc).

    An array pytree ``(N, ...)`` is sampled by indices: uniform with replacement
    (``replace=True``, O(batch) per step) or ``batch_size`` distinct indices per step
    (``replace=False``, a random permutation: O(N) per step).
    """
    if is_stream(data):
        stream = Stream(data, batch_size, mesh)
        return DataSource(lambda key, arrays, x: x, None, stream.spec, stream)
    if callable(data):
        try:
            probe = data(jax.random.PRNGKey(0), batch_size)
        except Exception as err:
            raise ValueError(f"data(key, batch_size) failed on a probe call: {type(err).__name__}: {err}") from err
        check_batch_tree("data(key, batch_size)", probe, size=batch_size)
        draw = lambda key, arrays, x: data(key, batch_size)  # noqa: E731
        return DataSource(draw, None, jax.eval_shape(draw, jax.random.PRNGKey(0), None, None), None)
    if data is None or isinstance(data, (str, bytes)):
        raise ValueError(
            "data must be an array (N, ...), a pytree of such arrays, a callable data(key, batch_size) or an "
            f"iterable of batches; got {data!r:.80}"
        )
    n = check_batch_tree("data", data)
    if not replace and batch_size > n:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {n} examples in data (replace=False draws distinct examples)"
        )
    arrays = jax.device_put(data, None if mesh is None else replicated(mesh))
    if replace:
        indices = lambda key: jax.random.randint(key, (batch_size,), 0, n)  # noqa: E731
    else:
        indices = lambda key: jax.random.choice(key, n, (batch_size,), replace=False)  # noqa: E731
    draw = lambda key, arrays, x: jax.tree.map(lambda a: a[indices(key)], arrays)  # noqa: E731
    return DataSource(draw, arrays, jax.eval_shape(draw, jax.random.PRNGKey(0), arrays, None), None)
