"""Few-step and one-step generation from interpolant models (docs/MATH.md §13).

* :mod:`~genjax.distill.reflow` — rectified flow: ODE pairs, k-rectified flow, one-step distillation;
* :mod:`~genjax.distill.consistency` — consistency distillation and training (iCT recipe), multistep sampling;
* :mod:`~genjax.distill.meanflow` — MeanFlow average-velocity models, one-step sampling.
"""

from .consistency import ConsistencyModel, sample_consistency, train_consistency
from .meanflow import gaussian_average_velocity, sample_meanflow, train_meanflow
from .reflow import pair_straightness, rectify, reflow_pairs, train_distill, train_reflow

__all__ = ["ConsistencyModel", "gaussian_average_velocity", "pair_straightness", "rectify", "reflow_pairs",
           "sample_consistency", "sample_meanflow", "train_consistency", "train_distill", "train_meanflow",
           "train_reflow"]
