"""Model behaviour: input-size independence, recompute, XLA, mixed precision, stochastic depth."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from model import clip
from model.video_swin import (
    VARIANTS,
    SwinTransformerBlock3D,
    build_backbone,
    build_classifier,
    get_config,
)
from model.video_swin.layers import drop_path_scale
from tests.model.helpers import random_clips


def test_variants_table():
    t, s, b, ssv2 = (VARIANTS[n] for n in ("swin_t", "swin_s", "swin_b", "swin_b_ssv2"))
    assert (t.embed_dim, t.depths, t.num_heads, t.window_size) == (
        96,
        (2, 2, 6, 2),
        (3, 6, 12, 24),
        (8, 7, 7),
    )
    assert s.depths == (2, 2, 18, 2) and b.embed_dim == 128 and b.num_heads == (4, 8, 16, 32)
    assert ssv2.window_size == (16, 7, 7) and ssv2.drop_path_rate == 0.4
    with pytest.raises(ValueError, match="unknown Video Swin variant 'swin_xl'"):
        get_config("swin_xl")


def test_same_weights_for_any_clip_size(tmp_path):
    small = build_classifier("swin_t", 400, (8, 112, 112, 3))
    large = build_classifier("swin_t", 400, (32, 224, 224, 3))
    assert [w.shape for w in small.weights] == [w.shape for w in large.weights]
    assert small.count_params() == 28_158_070  # torchvision's num_params for swin3d_t
    small.save_weights(tmp_path / "w.h5")
    large.load_weights(tmp_path / "w.h5")  # would raise on any shape that depends on the size
    for a, b in zip(small.weights, large.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize(("variant", "rows"), [("swin_t", 2535), ("swin_b_ssv2", 5239)])
def test_bias_table_sized_for_configured_window(variant, rows):
    # A 4x32x32 clip shrinks every window to 2x8x8 or smaller; the table must not follow.
    backbone = build_backbone(variant, (4, 32, 32, 3)).get_layer("backbone")
    for i, stage in enumerate(backbone.stages):
        table = stage.blocks[0].attn.relative_position_bias_table
        assert table.shape == (rows, VARIANTS[variant].num_heads[i])


def _grads(model, clips, labels, seed):
    tf.random.set_seed(seed)  # same drop-path draws in both runs
    with tf.GradientTape() as tape:
        logits = model(clips, training=True)
        loss = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        )
    return loss, tape.gradient(loss, model.trainable_variables)


def test_recompute_gives_the_same_gradients():
    shape = (6, 40, 36, 3)
    kwargs = {"drop_path_rate": 0.5, "head_dropout": 0.0}
    plain = build_classifier("tiny", 4, shape, **kwargs)
    recomputed = build_classifier("tiny", 4, shape, recompute=True, **kwargs)
    recomputed.set_weights(plain.get_weights())
    clips, labels = random_clips((3, *shape), seed=3), tf.constant([0, 1, 3])
    loss_a, grads_a = _grads(plain, clips, labels, seed=7)
    loss_b, grads_b = _grads(recomputed, clips, labels, seed=7)
    np.testing.assert_allclose(loss_a.numpy(), loss_b.numpy(), rtol=1e-6)
    assert len(grads_a) == len(grads_b) == len(plain.trainable_variables)
    for var, a, b in zip(plain.trainable_variables, grads_a, grads_b, strict=True):
        assert a is not None and b is not None, var.name
        a, b = tf.convert_to_tensor(a).numpy(), tf.convert_to_tensor(b).numpy()  # gathers: sparse
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=var.name)
    # Some residual branches were dropped, so the drop-path draws were really shared.
    assert any(not np.any(tf.convert_to_tensor(g).numpy()) for g in grads_a)


def test_xla_matches_eager():
    model = build_classifier("tiny", 5, (10, 50, 65, 3))
    clips = random_clips((2, 10, 50, 65, 3), seed=4)
    eager = model(clips, training=False).numpy()
    xla = tf.function(lambda x: model(x, training=False), jit_compile=True)(tf.constant(clips))
    np.testing.assert_allclose(xla.numpy(), eager, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("policy", "atol"), [("mixed_float16", 0.05), ("mixed_bfloat16", 0.25)])
def test_mixed_precision_forward(policy, atol):
    shape = (8, 56, 56, 3)
    reference = build_classifier("tiny", 5, shape)
    clips = random_clips((2, *shape), seed=8)
    expected = reference(clips, training=False).numpy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_classifier("tiny", 5, shape)
        model.set_weights(reference.get_weights())
        features = model.get_layer("backbone")
        logits = model(clips, training=False)
        feats = features(clips, training=False)["features"]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert logits.dtype == tf.float32
    assert feats.dtype == keras.mixed_precision.Policy(policy).compute_dtype
    assert np.isfinite(logits.numpy()).all() and np.isfinite(feats.numpy().astype(np.float32)).all()
    np.testing.assert_allclose(logits.numpy(), expected, atol=atol, rtol=0)


def test_stochastic_depth_is_per_sample():
    x = tf.ones([64, 2, 3, 3, 8])
    scale = drop_path_scale(x, 0.5).numpy()
    assert scale.shape == (64, 1, 1, 1, 1)
    assert set(np.unique(scale)) == {0.0, 2.0}  # dropped, or kept and rescaled by 1/(1-p)

    block = SwinTransformerBlock3D(16, 2, (2, 4, 4), (1, 2, 2), drop_path=0.5)
    x = tf.random.stateless_normal([32, 4, 8, 8, 16], seed=(1, 2))
    tf.random.set_seed(0)
    y = block(x, training=True)
    unchanged = np.all(np.isclose(y.numpy(), x.numpy()), axis=(1, 2, 3, 4))
    assert 0 < unchanged.sum() < 32  # both branches dropped for some samples only
    np.testing.assert_array_equal(
        block(x, training=False).numpy(), block(x, training=False).numpy()
    )


def test_drop_path_rates_grow_linearly():
    config = get_config("swin_t")
    backbone = build_backbone(config, (4, 32, 32, 3)).get_layer("backbone")
    rates = [b.drop_path for s in backbone.stages for b in s.blocks]
    np.testing.assert_allclose(rates, np.linspace(0.0, 0.1, 12))


def test_clip_normalize():
    frames = tf.constant([[[0, 128, 255]]], tf.uint8)
    got = clip.normalize(frames).numpy()
    want = (np.array([0, 128, 255]) - np.array(clip.MEAN_RGB)) / np.array(clip.STD_RGB)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got[0, 0], want, rtol=1e-6)
    np.testing.assert_allclose(clip.normalize(tf.cast(frames, tf.float32)).numpy(), got)
