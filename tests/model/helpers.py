"""Helpers for tests.model tests (plain module: pytest advises against importing conftest)."""

from __future__ import annotations

import numpy as np

NUM_CLASSES = 400


def random_clips(shape, seed=0) -> np.ndarray:
    """Normalised-looking float32 clips [B, T, H, W, 3]."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


TINY_CLASSES = 5


TINY_SHAPE = (4, 32, 32, 3)
