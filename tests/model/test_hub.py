"""A converted directory is a TF Hub module: hub.KerasLayer fine-tunes it, with a model card."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from model import convert, hub
from tests.model.helpers import TINY_CLASSES, TINY_SHAPE, random_clips


@pytest.fixture(scope="module")
def tensorflow_hub():
    return hub.import_tensorflow_hub()


def _keras_model(tensorflow_hub, handle):
    inputs = keras.Input(TINY_SHAPE, dtype=tf.float32)
    layer = tensorflow_hub.KerasLayer(handle, trainable=True)
    return keras.Model(inputs, layer(inputs)), layer


def test_keras_layer_matches_serving_default_and_trains(
    tiny_converted, tiny_converted_loaded, tensorflow_hub
):
    model, layer = _keras_model(tensorflow_hub, tiny_converted["official"])
    clips = random_clips((2, *TINY_SHAPE), seed=21)
    serve = tiny_converted_loaded.signatures["serving_default"]
    expected = serve(clips=tf.constant(clips))["logits"].numpy()
    np.testing.assert_allclose(model(clips, training=False).numpy(), expected, atol=1e-5, rtol=0)
    # All weights are fine-tunable: patch embedding, blocks, norms, relative position tables, head.
    assert len(layer.trainable_weights) == len(tiny_converted_loaded.variables)
    assert not layer.non_trainable_weights
    # Every weight gets a gradient. Through the deterministic path: in training, stochastic
    # depth may drop a residual branch for the whole batch, and that branch's weights then get
    # none in that step (one in ~12 seeds for this model).
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(np.array([1, 3]), model(clips, training=False))
    gradients = tape.gradient(loss, layer.trainable_weights)
    zero = [w.name for w, g in zip(layer.trainable_weights, gradients, strict=True)
            if g is None or not np.any(tf.convert_to_tensor(g).numpy())]  # fmt: skip
    assert not zero, f"{len(zero)} weights get no gradient: {zero[:5]}"
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss_fn)
    assert np.isfinite(model.train_on_batch(clips, np.array([1, 3])))
    assert not np.allclose(model(clips, training=False).numpy(), expected, atol=1e-5)


def test_backbone_module_gives_the_features_signature(
    tiny_converted, tiny_converted_loaded, tensorflow_hub
):
    directory = os.path.join(tiny_converted["official"], hub.BACKBONE_DIR)
    model, layer = _keras_model(tensorflow_hub, directory)
    clips = random_clips((1, *TINY_SHAPE), seed=22)
    features = tiny_converted_loaded.signatures["features"]
    expected = features(clips=tf.constant(clips))["features"].numpy()
    got = model(clips, training=False).numpy()
    assert got.shape == expected.shape == (1, 2, 1, 1, 192)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert layer.trainable_weights and not any("head" in w.name for w in layer.trainable_weights)


def test_reusable_contract_and_model_card(tiny_converted, tiny_converted_loaded, tiny_checkpoints):
    loaded = tiny_converted_loaded
    assert callable(loaded) and list(loaded.regularization_losses) == []
    assert len(loaded.variables) == len(loaded.trainable_variables) > 100
    clips = tf.constant(random_clips((1, *TINY_SHAPE), seed=23))
    assert loaded(clips, training=False).shape == (1, TINY_CLASSES)
    # training=True applies dropout / stochastic depth: two calls differ.
    assert not np.allclose(loaded(clips, training=True), loaded(clips, training=True))
    with open(os.path.join(tiny_converted["official"], convert.METADATA)) as f:
        meta = json.load(f)
    with open(os.path.join(tiny_converted["official"], hub.MODEL_CARD)) as f:
        card = f.read()
    assert os.path.basename(tiny_checkpoints["official"]) in card
    assert meta["checkpoint_sha256"] in card and "`tiny`" in card
    assert f"[B, {', '.join(map(str, TINY_SHAPE))}]" in card
    assert "123.675, 116.28, 103.53" in card and "58.395, 57.12, 57.375" in card
    assert f"logits `[B, {TINY_CLASSES}]`" in card and f"`{hub.BACKBONE_DIR}/`" in card
    no_head = hub.model_card(dict(meta, num_classes=None))
    assert "__call__` and `serving_default`: the final feature map" in no_head
    assert f"`{hub.BACKBONE_DIR}/`" not in no_head
