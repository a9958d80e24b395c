"""Clip normalisation used by the released Video Swin checkpoints: the one source of truth.

The tf.Transform preprocessing, the Trainer's input pipeline and the serving client import these.
"""

from __future__ import annotations

import tensorflow as tf

# RGB in 0..255 (mmaction / Video-Swin configs; torchvision's 0..1 constants times 255).
MEAN_RGB = (123.675, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)


def normalize(frames: tf.Tensor) -> tf.Tensor:
    """[..., 3] uint8 or float RGB in 0..255 -> float32 (frames - MEAN_RGB) / STD_RGB."""
    frames = tf.convert_to_tensor(frames)
    if frames.shape.rank is not None and frames.shape[-1] not in (None, 3):
        raise ValueError(f"normalize expects RGB frames [..., 3]; got shape {frames.shape}")
    frames = tf.cast(frames, tf.float32)
    return (frames - tf.constant(MEAN_RGB, tf.float32)) / tf.constant(STD_RGB, tf.float32)
