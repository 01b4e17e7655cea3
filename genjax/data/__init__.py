"""Data sets: 2-D toy sets with known densities where possible (``toy``)."""

from . import toy
