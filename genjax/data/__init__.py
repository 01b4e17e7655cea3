"""Data sets: 2-D toy sets with known densities where possible (``toy``), 8×8 digits (``images``)."""

from . import images, toy
