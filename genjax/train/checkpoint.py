"""Orbax checkpoints of a whole ``TrainState`` (params, opt_state, EMA, step, key).

A checkpoint directory holds one sub-folder per saved step (``CheckpointManager`` with
``max_to_keep=keep``). Saving refuses a state with non-finite floats, so the last
checkpoint of a run that diverged is always a good one.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from .state import TrainState

__all__ = ["checkpoint_manager", "saved_steps", "save_state", "restore_state"]


def checkpoint_manager(directory, keep: int | None = 3, *, create: bool = True) -> ocp.CheckpointManager:
    """An Orbax ``CheckpointManager`` over ``directory`` keeping the newest ``keep`` steps.

    ``create=False`` (for restoring) raises ``FileNotFoundError`` naming a missing path.
    """
    if keep is not None and (not isinstance(keep, int) or keep < 1):
        raise ValueError(f"keep must be a positive int or None (keep all), got {keep!r}")
    path = Path(directory).expanduser().resolve()
    if not create and not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(path)!r} does not exist")
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create)
    return ocp.CheckpointManager(path, options=options)


def saved_steps(directory) -> list[int]:
    """The steps saved in ``directory`` (ascending); ``[]`` if it is missing or empty."""
    path = Path(directory).expanduser().resolve()
    if not path.is_dir():
        return []
    with checkpoint_manager(path, keep=None, create=False) as manager:
        return sorted(manager.all_steps())


def _all_finite(tree) -> bool:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    if not leaves:
        return True
    return bool(jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])))


def save_state(manager: ocp.CheckpointManager, state: TrainState) -> int:
    """Save ``state`` under its own ``step`` and block until it is on disk; returns the step.

    Raises ``FloatingPointError`` (and writes nothing) if any float in the state is NaN/inf.
    """
    step = int(state.step)
    if not _all_finite(state):
        raise FloatingPointError(f"refusing to checkpoint a non-finite TrainState at step {step}")
    manager.save(step, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
    return step


def restore_state(directory, template: TrainState, step: int | None = None) -> TrainState:
    """Restore the checkpoint at ``step`` (default: the latest) into the structure of ``template``.

    ``template`` supplies the pytree structure, shapes, dtypes, shardings and the static
    ``tx``. Raises ``FileNotFoundError`` if ``directory`` is missing and ``ValueError`` if it
    holds no checkpoint, the step is absent, or the files are corrupt or do not match.
    """
    with checkpoint_manager(directory, keep=None, create=False) as manager:
        path = manager.directory
        steps = sorted(manager.all_steps())
        if not steps:
            raise ValueError(f"checkpoint directory {str(path)!r} holds no checkpoint")
        step = steps[-1] if step is None else step
        if step not in steps:
            raise ValueError(f"no checkpoint for step {step} in {str(path)!r}; saved steps are {steps}")
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
