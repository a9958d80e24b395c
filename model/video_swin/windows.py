"""Static window bookkeeping (numpy, evaluated once per traced shape).

All sizes here are Python ints known when the model is built: T, H, W are fixed per model and only
the batch dimension is dynamic, so masks and bias indices become constants in the graph.
"""

from __future__ import annotations

import functools

import numpy as np


def pad_amounts(size: tuple[int, ...], multiple: tuple[int, ...]) -> tuple[int, ...]:
    """Zeros to add at the END of each dimension to reach a multiple."""
    return tuple((-s) % m for s, m in zip(size, multiple, strict=True))


def adjust_window_and_shift(
    size: tuple[int, int, int], window: tuple[int, int, int], shift: tuple[int, int, int]
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Where a feature dimension is <= the window, the window becomes that size and shift 0."""
    win = tuple(s if s <= w else w for s, w in zip(size, window, strict=True))
    sh = tuple(0 if s <= w else h for s, w, h in zip(size, window, shift, strict=True))
    return win, sh


@functools.cache
def relative_position_index(window: tuple[int, int, int]) -> np.ndarray:
    """[N, N] int32 rows into the bias table for the CONFIGURED window, N = Wd*Wh*Ww.

    Flattened d, h, w with multipliers (2Wh-1)(2Ww-1) and (2Ww-1), as the reference.
    """
    coords = np.stack(np.meshgrid(*[np.arange(w) for w in window], indexing="ij")).reshape(3, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)  # N, N, 3
    rel = rel + np.asarray(window) - 1
    wd, wh, ww = window
    del wd
    return (
        rel[..., 0] * (2 * wh - 1) * (2 * ww - 1) + rel[..., 1] * (2 * ww - 1) + rel[..., 2]
    ).astype(np.int32)


@functools.cache
def sliced_position_index(
    configured: tuple[int, int, int], effective: tuple[int, int, int]
) -> np.ndarray:
    """Index used for a (possibly shrunken) window: the top-left n x n block of the full index.

    This is deliberately NOT the geometric index of the smaller window; pretrained tables were
    trained (and are evaluated by the reference) with this slice.
    """
    n = int(np.prod(effective))
    return np.ascontiguousarray(relative_position_index(configured)[:n, :n])


@functools.cache
def shifted_window_regions(
    padded: tuple[int, int, int], window: tuple[int, int, int], shift: tuple[int, int, int]
) -> np.ndarray:
    """[num_windows, N] int32 region id of each token of each rolled window.

    Regions per dimension are the slices [0:-w], [-w:-s], [-s:]; a zero shift puts the whole
    dimension in one region (the reference's slice (-0, None) covers everything). Token pairs
    with different ids get -100 before the softmax. Ids instead of the [nW, N, N] mask keep the
    graph constants small (the stage-1 mask of Swin-T at 32x224 would be 79 MB).
    """
    labels = []
    for p, w, s in zip(padded, window, shift, strict=True):
        pos = np.arange(p)
        lab = np.zeros(p, np.int32) if s == 0 else (pos >= p - w).astype(np.int32) + (pos >= p - s)
        labels.append(lab)
    region = labels[0][:, None, None] * 9 + labels[1][None, :, None] * 3 + labels[2][None, None, :]
    nd, nh, nw = (p // w for p, w in zip(padded, window, strict=True))
    region = region.reshape(nd, window[0], nh, window[1], nw, window[2])
    return region.transpose(0, 2, 4, 1, 3, 5).reshape(nd * nh * nw, -1).astype(np.int32)


def shifted_window_mask(padded, window, shift) -> np.ndarray:
    """[num_windows, N, N] float32 additive mask (0 or -100), for tests and inspection."""
    region = shifted_window_regions(tuple(padded), tuple(window), tuple(shift))
    return np.where(region[:, None, :] != region[:, :, None], -100.0, 0.0).astype(np.float32)
