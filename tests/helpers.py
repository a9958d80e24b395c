"""Helpers shared by tests (plain functions: pytest advises against importing conftest)."""

from __future__ import annotations

import dataclasses
import pathlib


def tiny_spec():
    """12 real .avi clips per set: 2 of the embedded classes, 3 groups (split 1: 8 train,
    4 eval), 16 frames of 32x32."""
    from data import synthetic

    return dataclasses.replace(
        synthetic.SPEC,
        classes=("ShiftLeft", "ShiftRight"),
        groups=3,
        clips_per_group=2,
        num_frames=16,
        height=32,
        width=32,
    )


def add_span(data_root: pathlib.Path, number: int) -> pathlib.Path:
    """Arriving data: a tiny set in UCF101's layout as `<data_root>/span-<number>/` (each span
    its own clips: the seed is the span's number)."""
    from data import synthetic

    return synthetic.generate(data_root / f"span-{number}", number, tiny_spec())
