"""Float32 parity with torchvision's Video Swin (random weights, both checkpoint key formats)."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras as keras
import torch
from torchvision.models.video import swin_transformer as tv_swin

from model.convert import load_checkpoint, load_torch_state_dict
from model.video_swin import build_classifier, get_config
from model.video_swin import windows as win
from tests.model import torch_reference
from tests.model.helpers import NUM_CLASSES, random_clips

ATOL = 1e-4
KEYS = ("stage1", "stage2", "stage3", "stage4", "features", "logits")


def _tf_outputs(model: keras.Model, clips: np.ndarray) -> dict[str, np.ndarray]:
    both = keras.Model(model.inputs, [model.output, model.get_layer("backbone").output])
    logits, feats = both(clips, training=False)
    return {"logits": logits.numpy(), **{k: v.numpy() for k, v in feats.items()}}


def _assert_close(ours: dict, ref: dict) -> dict[str, float]:
    diffs = {}
    for key in KEYS:
        assert ours[key].shape == ref[key].shape, (key, ours[key].shape, ref[key].shape)
        diffs[key] = float(np.abs(ours[key] - ref[key]).max())
    assert all(d <= ATOL for d in diffs.values()), diffs
    return diffs


def test_both_key_formats_give_the_same_weights(swin_t_checkpoints):
    tv, fmt_tv = load_checkpoint(swin_t_checkpoints["torchvision"])
    off, fmt_off = load_checkpoint(swin_t_checkpoints["official"])
    assert (fmt_tv, fmt_off) == ("torchvision", "official")
    assert sorted(tv) == sorted(off)
    for key in tv:
        np.testing.assert_array_equal(tv[key], off[key], err_msg=key)


@pytest.mark.parametrize(
    ("fmt", "clip_shape"),
    [
        ("official", (1, 32, 224, 224, 3)),  # the released input size
        ("torchvision", (1, 10, 100, 130, 3)),  # padding in every stage, windows shrink
        ("torchvision", (1, 4, 64, 64, 3)),  # every stage below the 8x7x7 window
    ],
)
def test_swin_t_matches_torchvision(fmt, clip_shape, torch_swin_t, swin_t_checkpoints):
    state_dict, _ = load_checkpoint(swin_t_checkpoints[fmt])
    model = build_classifier("swin_t", NUM_CLASSES, clip_shape[1:])
    load_torch_state_dict(model, state_dict)
    clips = random_clips(clip_shape, seed=1)
    diffs = _assert_close(_tf_outputs(model, clips), torch_reference.run(torch_swin_t, clips))
    print(f"swin_t {clip_shape} max abs diff: {diffs}")


@pytest.mark.parametrize(
    ("variant", "clip_shape"),
    [
        ("tiny", (2, 10, 100, 130, 3)),
        ("tiny", (1, 3, 31, 45, 3)),  # odd sizes: patch padding, odd H/W at merging
        ("tiny", (2, 17, 60, 120, 3)),  # window shrinks in H only at late stages
        ("tiny_w4", (1, 9, 70, 50, 3)),
        ("tiny_w4", (1, 16, 64, 96, 3)),  # shift in every dimension of every stage
    ],
)
def test_tiny_configs_match_torchvision(variant, clip_shape):
    config = get_config(variant)
    ref_model = torch_reference.from_config(config, num_classes=7, seed=3)
    model = build_classifier(config, 7, clip_shape[1:])
    load_torch_state_dict(model, {k: v.numpy() for k, v in ref_model.state_dict().items()})
    clips = random_clips(clip_shape, seed=2)
    _assert_close(_tf_outputs(model, clips), torch_reference.run(ref_model, clips))


@pytest.mark.parametrize(
    ("variant", "clip_shape"),
    [
        ("tiny", (2, 10, 100, 130, 3)),  # padding, shrinking windows
        ("tiny_w4", (1, 16, 64, 96, 3)),  # shift in every dimension of every stage
    ],
)
def test_tiny_config_gradients_match_torchvision(variant, clip_shape):
    """The backward too: the attention, GELU and LayerNorm gradients are hand-written (ops.py),
    so the gradients of a loss on the logits, for the clip and every weight, are compared with
    torch's autograd (weights mapped through the converter's own layout plan)."""
    import tensorflow as tf

    from model.convert import weight_plan

    config = get_config(variant)
    ref_model = torch_reference.from_config(config, num_classes=7, seed=4)
    model = build_classifier(config, 7, clip_shape[1:])
    load_torch_state_dict(model, {k: v.numpy() for k, v in ref_model.state_dict().items()})
    clips = random_clips(clip_shape, seed=5)
    weights = np.random.default_rng(6).standard_normal((clip_shape[0], 7)).astype(np.float32)

    x = torch.from_numpy(np.ascontiguousarray(np.transpose(clips, (0, 4, 1, 2, 3))))
    x.requires_grad_(True)
    (ref_model(x) * torch.from_numpy(weights)).sum().backward()
    ref_grads = {n: p.grad.numpy() for n, p in ref_model.named_parameters()}
    ref_grads["clip"] = np.transpose(x.grad.numpy(), (0, 2, 3, 4, 1))

    plan = weight_plan(model.get_layer("backbone"), model.get_layer("head"))
    tf_clips = tf.constant(clips)
    with tf.GradientTape() as tape:
        tape.watch(tf_clips)
        loss = tf.reduce_sum(model(tf_clips, training=False) * weights)
    variables = [variable for _, variable, _ in plan]
    grads = tape.gradient(loss, [tf_clips, *variables])
    assert len(plan) == len(ref_grads) - 1 == len(model.trainable_variables)
    pairs = [("clip", grads[0], ref_grads["clip"])]
    pairs += [
        (key, g, layout(ref_grads[key]))
        for (key, _, layout), g in zip(plan, grads[1:], strict=True)
    ]
    for key, ours, ref in pairs:
        ours = tf.convert_to_tensor(ours).numpy()
        # Relative to the largest gradient of the tensor: float32 sums over thousands of terms.
        np.testing.assert_allclose(ours, ref, atol=1e-4 * np.abs(ref).max(), rtol=0, err_msg=key)


@pytest.mark.parametrize("window", [(8, 7, 7), (16, 7, 7), (4, 4, 4), (2, 3, 5)])
def test_relative_position_index_equals_reference_buffer(window):
    attn = tv_swin.ShiftedWindowAttention3d(12, list(window), [0, 0, 0], num_heads=3)
    np.testing.assert_array_equal(win.relative_position_index(window), attn.relative_position_index)


@pytest.mark.parametrize(
    ("padded", "window", "shift"),
    [
        ((16, 56, 56), (8, 7, 7), (4, 3, 3)),
        ((16, 7, 7), (8, 7, 7), (4, 0, 0)),
        ((8, 8, 12), (4, 4, 4), (0, 2, 2)),
    ],
)
def test_shift_mask_equals_reference(padded, window, shift):
    ref = tv_swin._compute_attention_mask_3d(torch.zeros(1), padded, window, shift).numpy()
    np.testing.assert_array_equal(win.shifted_window_mask(padded, window, shift), ref)


def test_shrunken_window_uses_top_left_slice_of_full_index():
    full = win.relative_position_index((8, 7, 7))
    sliced = win.sliced_position_index((8, 7, 7), (2, 2, 2))
    np.testing.assert_array_equal(sliced, full[:8, :8])
    # ... which is not the geometric index of a 2x2x2 window (the reason this matters).
    assert not np.array_equal(sliced, win.relative_position_index((2, 2, 2)))
