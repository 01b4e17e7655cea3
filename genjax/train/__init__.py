"""The generic trainer: ``TrainState``, ``fit`` (scan-compiled steps, EMA, clipping, evaluation
and early stopping, data streams, locked and checksummed Orbax checkpoints with exact
resume), data parallelism over a ``"data"`` mesh axis, and ``train_interpolant`` on top."""

from .checkpoint import (
    checkpoint_lock,
    checkpoint_manager,
    load_params,
    restore_state,
    resume_step,
    save_state,
    saved_steps,
)
from .ema import ema_partition
from .interpolant import RECIPES, Recipe, interpolant_objective, train_interpolant
from .loop import EarlyStopping, NonFiniteError, fit
from .parallel import data_mesh, initialize_distributed
from .state import TrainState

__all__ = [
    "TrainState",
    "fit",
    "ema_partition",
    "EarlyStopping",
    "NonFiniteError",
    "train_interpolant",
    "RECIPES",
    "Recipe",
    "interpolant_objective",
    "data_mesh",
    "initialize_distributed",
    "checkpoint_manager",
    "checkpoint_lock",
    "save_state",
    "restore_state",
    "load_params",
    "resume_step",
    "saved_steps",
]
