"""Orbax checkpoints of a whole ``TrainState`` (params, opt_state, EMA, step, key), locked and checksummed.

A checkpoint directory holds one sub-folder per saved step (``CheckpointManager`` with
``max_to_keep=keep``), and in each step folder ``sha256.json``: the SHA-256 of every file of
that step, written once Orbax has committed it and verified before every restore. Saving
refuses a state with non-finite floats, so the last checkpoint of a run that diverged is
always a good one. ``checkpoint_lock`` holds ``<dir>/.lock`` for the duration of a run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from .state import TrainState

__all__ = [
    "checkpoint_manager",
    "checkpoint_lock",
    "saved_steps",
    "resume_step",
    "save_state",
    "restore_state",
    "load_params",
]

MANIFEST = "sha256.json"
LOCK = ".lock"


def checkpoint_manager(directory, keep: int | None = 3, *, create: bool = True, **kwargs) -> ocp.CheckpointManager:
    """An Orbax ``CheckpointManager`` over ``directory`` keeping the newest ``keep`` steps.

    ``create=False`` (for restoring) raises ``FileNotFoundError`` naming a missing path;
    ``kwargs`` go to ``CheckpointManager`` (e.g. ``item_handlers``).
    """
    if keep is not None and (not isinstance(keep, int) or keep < 1):
        raise ValueError(f"keep must be a positive int or None (keep all), got {keep!r}")
    path = Path(directory).expanduser().resolve()
    if not create and not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(path)!r} does not exist")
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create)
    return ocp.CheckpointManager(path, options=options, **kwargs)


@contextlib.contextmanager
def checkpoint_lock(directory):
    """Hold an exclusive lock on ``directory`` (created if missing) for the ``with`` block.

    An OS lock (``fcntl.flock``) on ``<directory>/.lock``: while it is held, locking the same
    directory again — from another process, or from this one (a separate open file) — raises
    ``ValueError``. The lock dies with its process, so a lock file left by a crashed run does
    not block. On several hosts only process 0 locks (the processes of one run share the
    directory). The lock is advisory on network file systems that do not support ``flock``.
    """
    path = Path(directory).expanduser().resolve()
    if jax.process_index() != 0:
        yield path
        return
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown process"
            raise ValueError(
                f"checkpoint_dir {str(path)!r} is in use by another training run ({holder}); wait for it to "
                "finish or use another directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the flock


def saved_steps(directory) -> list[int]:
    """The steps saved in ``directory`` (ascending); ``[]`` if it is missing or empty."""
    path = Path(directory).expanduser().resolve()
    if not path.is_dir():
        return []
    with checkpoint_manager(path, keep=None, create=False) as manager:
        return sorted(manager.all_steps())


# ----------------------------------------------------------------------------- integrity


def _sha256(file: Path) -> str:
    with file.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _write_manifest(step_dir: Path) -> None:
    """Record the SHA-256 of every file in ``step_dir`` in its ``sha256.json`` (atomically)."""
    files = sorted(f for f in step_dir.rglob("*") if f.is_file() and f.relative_to(step_dir).as_posix() != MANIFEST)
    digests = {f.relative_to(step_dir).as_posix(): _sha256(f) for f in files}
    tmp = step_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"sha256": digests}, indent=0))
    os.replace(tmp, step_dir / MANIFEST)


def _corruption(step_dir: Path) -> str | None:
    """What is wrong with the files of a saved step according to its manifest, or ``None``.

    A step without a manifest (saved by Orbax directly, or interrupted between Orbax's
    commit and the manifest) passes unverified, with a warning.
    """
    try:
        digests = json.loads((step_dir / MANIFEST).read_text())["sha256"]
    except FileNotFoundError:
        warnings.warn(f"checkpoint {str(step_dir)!r} has no {MANIFEST}; restoring it unverified", stacklevel=2)
        return None
    except (ValueError, KeyError, TypeError):
        return f"its {MANIFEST} is unreadable"
    for name, digest in digests.items():
        file = step_dir / name
        if not file.is_file():
            return f"file {name} is missing"
        if _sha256(file) != digest:
            return f"file {name} does not match its SHA-256 checksum"
    return None


def _intact_step(manager: ocp.CheckpointManager, step: int | None) -> int:
    """``step`` if it is saved and intact (else ``ValueError``); for ``None`` the newest intact
    step, warning about each newer corrupt one."""
    path = Path(manager.directory)
    steps = sorted(manager.all_steps())
    if not steps:
        raise ValueError(f"checkpoint directory {str(path)!r} holds no checkpoint")
    if step is not None:
        if step not in steps:
            raise ValueError(f"no checkpoint for step {step} in {str(path)!r}; saved steps are {steps}")
        if problem := _corruption(path / str(step)):
            raise ValueError(f"checkpoint step {step} in {str(path)!r} is corrupt: {problem}")
        return step
    corrupt = []
    for candidate in reversed(steps):
        problem = _corruption(path / str(candidate))
        if problem is None:
            if corrupt:
                warnings.warn(f"falling back to step {candidate}, the newest intact checkpoint in {str(path)!r} "
                              f"(corrupt: steps {corrupt})", stacklevel=2)
            return candidate
        warnings.warn(f"checkpoint step {candidate} in {str(path)!r} is corrupt: {problem}", stacklevel=2)
        corrupt.append(candidate)
    raise ValueError(f"every checkpoint in {str(path)!r} is corrupt (steps {steps}); see the warnings")


def resume_step(directory) -> int:
    """The step ``fit(resume=True)`` restores from ``directory``: the newest intact checkpoint.

    Use it to position a data stream before resuming. Raises like ``restore_state``.
    """
    with checkpoint_manager(directory, keep=None, create=False) as manager:
        return _intact_step(manager, None)


# ----------------------------------------------------------------------------- save / restore


@jax.jit
def _all_finite(leaves: list) -> jax.Array:
    """Whether every float in ``leaves`` is finite (one compiled reduction per list of shapes)."""
    checks = [jnp.all(jnp.isfinite(x)) for x in leaves if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(checks)) if checks else jnp.bool_(True)


def save_state(manager: ocp.CheckpointManager, state: TrainState) -> int:
    """Save ``state`` under its own ``step``, block until it is on disk, write its checksums; returns the step.

    ``manager`` comes from ``checkpoint_manager``. Raises ``FloatingPointError`` (and writes
    nothing) if any float in the state is NaN/inf.
    """
    step = int(state.step)
    if not bool(_all_finite(jax.tree.leaves(state))):
        raise FloatingPointError(f"refusing to checkpoint a non-finite TrainState at step {step}")
    manager.save(step, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
    if jax.process_index() == 0:
        _write_manifest(Path(manager.directory) / str(step))
    return step


def restore_state(directory, template: TrainState, step: int | None = None) -> TrainState:
    """Restore the checkpoint at ``step`` into the structure of ``template``.

    ``step=None`` restores the newest intact checkpoint: a step whose files do not match their
    checksums is reported with a warning (naming the step and file) and skipped. An explicit
    corrupt ``step`` raises ``ValueError``. ``template`` supplies the pytree structure,
    shapes, dtypes, shardings and the static ``tx``. Raises ``FileNotFoundError`` if
    ``directory`` is missing and ``ValueError`` if it holds no (intact) checkpoint, the step is
    absent, or the files do not match the template.
    """
    with checkpoint_manager(directory, keep=None, create=False) as manager:
        path = manager.directory
        step = _intact_step(manager, step)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        try:
            state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as err:  # orbax raises many types for unreadable/mismatched files
            raise ValueError(
                f"checkpoint for step {step} in {str(path)!r} is corrupt or does not match the "
                f"TrainState template ({type(err).__name__}: {err})"
            ) from err
    if int(state.step) != step:
        raise ValueError(f"checkpoint {str(path)!r}/{step} stores step {int(state.step)}; it is corrupt")
    return state


def load_params(checkpoint_dir, step: int | None = None, which: str = "ema_params"):
    """The parameters saved in a checkpoint, without a ``TrainState`` or optimizer template.

    Returns the ``which`` pytree (``"ema_params"``, the default, or ``"params"``) of the
    checkpoint at ``step`` (default: the newest intact one, as in ``restore_state``), as nested
    dicts (lists for sequences) of arrays on the default device — for Flax, the structure
    ``init`` returned, ready for ``model.apply``. Only that subtree is read; the same
    integrity checks as ``restore_state`` apply.
    """
    if which not in ("ema_params", "params"):
        raise ValueError(f"which must be 'ema_params' or 'params', got {which!r}")
    handler = ocp.PyTreeCheckpointHandler()
    with checkpoint_manager(checkpoint_dir, keep=None, create=False, item_handlers=handler) as manager:
        path = manager.directory
        step = _intact_step(manager, step)
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        try:
            saved = manager.item_metadata(step)[which]
            target = {which: jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved)}
            restored = manager.restore(step, args=ocp.args.PyTreeRestore(
                item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True))
        except Exception as err:  # orbax raises many types for unreadable/foreign checkpoints
            raise ValueError(
                f"checkpoint for step {step} in {str(path)!r} holds no readable {which!r} "
                f"({type(err).__name__}: {err})"
            ) from err
    return restored[which]
