"""Checkpoint conversion: CLI end to end, safe loading, and errors that name the key."""

from __future__ import annotations

import collections
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import torch

from model import convert
from model.convert import CheckpointError, load_checkpoint, load_torch_state_dict
from model.video_swin import build_backbone, build_classifier
from tests.model import torch_reference
from tests.model.helpers import TINY_CLASSES, TINY_SHAPE, random_clips

# The CLI's output is tiny_converted (`python -m model.convert` of the tiny official .pth, shared
# with test_pth and test_hub): the CLI does not depend on the variant's size, and Swin-T's own
# numerics are test_parity's.


def test_cli_writes_a_servable_trainable_saved_model(tiny_converted_loaded, torch_tiny):
    loaded = tiny_converted_loaded
    assert set(loaded.signatures) == {"serving_default", "features"}
    clips = random_clips((2, *TINY_SHAPE), seed=5)
    ref = torch_reference.run(torch_tiny, clips)
    logits = loaded.signatures["serving_default"](clips=tf.constant(clips))["logits"].numpy()
    assert logits.shape == (2, TINY_CLASSES)
    np.testing.assert_allclose(logits, ref["logits"], atol=1e-4, rtol=0)
    feats = loaded.signatures["features"](clips=tf.constant(clips))["features"].numpy()
    np.testing.assert_allclose(feats, ref["features"], atol=1e-4, rtol=0)
    variables = loaded.variables
    assert len(variables) > 100 and all(v.trainable for v in variables)
    assert loaded.signatures["serving_default"].trainable_variables


def test_cli_metadata_and_keras_weights(tiny_converted, torch_tiny):
    converted = tiny_converted["official"]
    with open(os.path.join(converted, convert.METADATA)) as f:
        meta = json.load(f)
    assert meta["variant"] == "tiny" and meta["num_classes"] == TINY_CLASSES
    assert meta["input_shape"] == list(TINY_SHAPE) and meta["checkpoint_format"] == "official"
    assert meta["num_parameters"] == sum(p.numel() for p in torch_tiny.parameters())
    # Weights never depend on the clip size: load them into a model of another size.
    other = (4, 48, 40, 3)
    model = build_classifier("tiny", TINY_CLASSES, other)
    model.load_weights(os.path.join(converted, convert.KERAS_WEIGHTS))
    clips = random_clips((1, *other), seed=6)
    np.testing.assert_allclose(
        model(clips, training=False).numpy(),
        torch_reference.run(torch_tiny, clips)["logits"],
        atol=1e-4,
        rtol=0,
    )


def test_cli_no_head(tiny_checkpoints, tmp_path, capsys):
    out = str(tmp_path / "backbone")
    argv = ["--checkpoint", tiny_checkpoints["torchvision"], "--variant", "tiny"]
    argv += ["--output", out, "--frames", "4", "--size", "32", "32", "--no-head"]
    assert convert.main(argv) == 0
    assert "classes none" in capsys.readouterr().out
    loaded = tf.saved_model.load(out)
    result = loaded.signatures["serving_default"](clips=tf.zeros([1, 4, 32, 32, 3]))
    assert set(result) == {"features"} and result["features"].shape == (1, 2, 1, 1, 192)


class Pickled:  # a custom class: unpickling it would need code execution
    def __init__(self):
        self.weights = torch.zeros(3)


def test_checkpoint_needing_code_execution_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": Pickled()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused: unpickling it needs code"):
        load_checkpoint(str(path))
    argv = ["--checkpoint", str(path), "--variant", "swin_t", "--output", str(tmp_path / "o")]
    assert convert.main(argv) == 2
    assert "code execution" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def tiny_state():
    from model.video_swin import get_config

    ref = torch_reference.from_config(get_config("tiny"), num_classes=5, seed=1)
    return collections.OrderedDict((k, v.numpy()) for k, v in ref.state_dict().items())


@pytest.fixture(scope="module")
def tiny_model():
    return build_classifier("tiny", 5, (4, 32, 32, 3))


def test_missing_key_is_named(tiny_state, tiny_model):
    state = dict(tiny_state)
    del state["features.2.1.attn.relative_position_bias_table"]
    with pytest.raises(
        CheckpointError, match=r"missing .*features\.2\.1\.attn\.relative_position_bias_table"
    ):
        load_torch_state_dict(tiny_model, state)


def test_unexpected_key_is_named(tiny_state, tiny_model):
    state = dict(tiny_state, **{"features.0.0.attn.extra_scale": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match=r"unexpected .*features\.0\.0\.attn\.extra_scale"):
        load_torch_state_dict(tiny_model, state)


def test_shape_mismatch_is_named(tiny_state, tiny_model):
    state = dict(tiny_state, **{"features.1.reduction.weight": np.zeros((48, 24), np.float32)})
    with pytest.raises(
        CheckpointError, match=r"features\.1\.reduction\.weight: shape mismatch.*\(48, 24\)"
    ):
        load_torch_state_dict(tiny_model, state)


def test_wrong_window_position_index_is_refused(tiny_state, tiny_model):
    from model.video_swin import windows as win

    state = dict(tiny_state)
    state["features.0.1.attn.relative_position_index"] = win.relative_position_index((4, 4, 4))
    with pytest.raises(CheckpointError, match=r"features\.0\.1\.attn\.relative_position_index"):
        load_torch_state_dict(tiny_model, state)


def test_head_is_dropped_only_when_asked(tiny_state):
    backbone = build_backbone("tiny", (4, 32, 32, 3))
    assert load_torch_state_dict(backbone, tiny_state, head=False) > 0
    classifier = build_classifier("tiny", 5, (4, 32, 32, 3))
    before = classifier.get_layer("head").fc_cls.kernel.numpy()
    load_torch_state_dict(classifier, tiny_state, head=False)
    np.testing.assert_array_equal(classifier.get_layer("head").fc_cls.kernel.numpy(), before)
    wrong_classes = build_classifier("tiny", 9, (4, 32, 32, 3))
    with pytest.raises(CheckpointError, match=r"head\.weight: shape mismatch"):
        load_torch_state_dict(wrong_classes, tiny_state)


def test_unknown_checkpoint_layout_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=r"other\.pth: neither an official"):
        load_checkpoint(str(path))
