"""Data sets: 2-D toy sets with known densities where possible (``toy``); images (``images``: conventions,
8×8 digits, training streams, grids; ``photos``: natural-image patches; ``folders``: user image folders and arrays;
``dynamics``: controlled linear-Gaussian and sprite systems for world models)."""

from . import dynamics, folders, images, photos, toy

__all__ = ["dynamics", "folders", "images", "photos", "toy"]
