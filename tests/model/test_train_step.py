"""The Trainer's training step: gradient accumulation equals one step on the whole batch."""

import dataclasses

import numpy as np
import pytest
import tf_keras as keras

from model import train
from model.options import TrainOptions
from model.strategy import make_strategy

OPTIONS = TrainOptions(
    variant="micro",  # the step's arithmetic, not the model's depth, is what is compared
    clip_frames=4,
    sampled_frames=4,
    image_size=16,
    batch_size=4,
    warmup_epochs=0.0,
    drop_path_rate=0.0,
    learning_rate=1e-2,
)


def _one_step(accumulation_steps: int, clips, labels) -> list[np.ndarray]:
    keras.utils.set_random_seed(0)  # identical initial weights
    options = dataclasses.replace(OPTIONS, accumulation_steps=accumulation_steps)
    model = train.build_model(options, 3, steps_per_epoch=10)
    model.classifier.get_layer("head").dropout.rate = 0.0  # deterministic forward
    before = [w.copy() for w in model.classifier.get_weights()]
    model.train_on_batch(clips, labels)
    after = model.classifier.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert int(model.optimizer.iterations.numpy()) == 1  # one optimizer step either way
    return after


def test_accumulating_two_micro_batches_equals_one_whole_batch_step():
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (4, 4, 16, 16, 3), dtype=np.uint8)
    labels = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]
    whole, accumulated = _one_step(1, clips, labels), _one_step(2, clips, labels)
    for a, b in zip(whole, accumulated, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-4)


def test_batch_must_divide_into_micro_batches():
    with pytest.raises(ValueError, match="multiple of accumulation_steps"):
        dataclasses.replace(OPTIONS, accumulation_steps=3)


def test_a_trainer_that_needs_gpus_fails_at_start_saying_why():
    """--gpus N (Kubeflow's default is 1) on a machine where TensorFlow sees fewer GPUs."""
    import tensorflow as tf

    visible = len(tf.config.list_physical_devices("GPU"))
    with pytest.raises(RuntimeError, match=rf"{visible + 1} GPU\(s\) requested") as error:
        make_strategy("auto", gpus=visible + 1)
    assert "make setup GPU=1" in str(error.value) and "--build-arg GPU=1" in str(error.value)
    assert make_strategy("auto", gpus=visible).num_replicas_in_sync >= 1
