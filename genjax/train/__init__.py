"""The generic trainer: ``TrainState``, ``fit`` (scan-compiled steps, EMA, clipping, Orbax
checkpoints with exact resume), data parallelism over a ``"data"`` mesh axis, and
``train_interpolant`` on top."""

from .checkpoint import checkpoint_manager, restore_state, save_state, saved_steps
from .interpolant import interpolant_objective, train_interpolant
from .loop import NonFiniteError, fit
from .parallel import data_mesh, initialize_distributed
from .state import TrainState

__all__ = [
    "TrainState",
    "fit",
    "NonFiniteError",
    "train_interpolant",
    "interpolant_objective",
    "data_mesh",
    "initialize_distributed",
    "checkpoint_manager",
    "save_state",
    "restore_state",
    "saved_steps",
]
