"""The Swin-T training setup both model benchmarks measure: model, clips and one AdamW step."""

from __future__ import annotations

from typing import Any, NamedTuple


class TrainingSetup(NamedTuple):
    """model: [N,T,H,W,3] -> logits; step(clips, labels) -> loss, undecorated (callers choose
    tf.function / jit_compile)."""

    model: Any
    clips: Any
    labels: Any
    step: Any


def swin_t_training(
    shape: tuple[int, ...], num_classes: int, recompute: bool = False
) -> TrainingSetup:
    """Swin-T with random weights, random clips of `shape` (N,T,H,W,3), AdamW slots built."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from model.video_swin import build_classifier

    model = build_classifier("swin_t", num_classes, shape[1:], recompute=recompute)
    optimizer = keras.optimizers.AdamW(1e-4, weight_decay=0.05)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    clips = tf.constant(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    labels = tf.constant([1] * shape[0])

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
        return loss

    return TrainingSetup(model, clips, labels, step)
