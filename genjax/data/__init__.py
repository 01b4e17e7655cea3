"""Data sets: 2-D toy sets with known densities where possible (``toy``); images (``images``: conventions,
8×8 digits, training streams, grids; ``photos``: natural-image patches; ``folders``: user image folders and arrays)."""

from . import folders, images, photos, toy

__all__ = ["folders", "images", "photos", "toy"]
