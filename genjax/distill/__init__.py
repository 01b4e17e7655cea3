"""Few-step and one-step generation from interpolant models (MATH.md §13): reflow, consistency, MeanFlow."""
