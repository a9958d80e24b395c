"""Warm start: base model, then pretrained (.pth or converted directory), then from scratch."""

from __future__ import annotations

import logging
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from model import hub
from model.pth import CheckpointError
from model.video_swin import build_classifier, feature_model
from model.warm_start import initialize
from tests.model import torch_reference
from tests.model.helpers import TINY_CLASSES, TINY_SHAPE, random_clips

CLIPS = random_clips((2, *TINY_SHAPE), seed=31)


@pytest.fixture(scope="module")
def reference(torch_tiny):
    return torch_reference.run(torch_tiny, CLIPS)


def _classifier(num_classes=TINY_CLASSES, variant="tiny", seed=0):
    keras.utils.set_random_seed(seed)
    return build_classifier(variant, num_classes, TINY_SHAPE)


def _features(model):
    return feature_model(model)(CLIPS, training=False)["features"].numpy()


def _head(model):
    return [v.numpy() for v in model.get_layer("head").variables]


def _logits(model):
    return model(CLIPS, training=False).numpy()


@pytest.fixture(scope="module")
def base_model(tiny_checkpoints, tmp_path_factory):
    """An export as earlier Trainers wrote it (the compiled Keras model tracked as `classifier`,
    optimizer included; today's tracks the variables list under the same key), of a model whose
    weights are neither random nor the checkpoint's."""
    model = _classifier()
    initialize(model, pretrained=tiny_checkpoints["official"])
    rng = np.random.default_rng(0)
    for variable in model.variables:
        variable.assign_add(rng.normal(0, 0.01, variable.shape).astype(np.float32))
    model.compile(  # the Trainer's model has an optimizer; none of its state may carry over
        optimizer=keras.optimizers.AdamW(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    module = tf.Module()
    module.classifier = model
    directory = str(tmp_path_factory.mktemp("base_model") / "Format-Serving")
    tf.saved_model.save(module, directory)
    return os.path.dirname(directory), model


def test_from_scratch_warns(caplog):
    model = _classifier()
    before = _logits(model)
    with caplog.at_level(logging.WARNING):
        description = initialize(model)
    assert description.startswith("from scratch")
    assert any(
        "from scratch" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
    )
    np.testing.assert_array_equal(_logits(model), before)


@pytest.mark.parametrize("fmt", ["official", "torchvision"])
def test_pth_with_head(tiny_checkpoints, reference, fmt):
    model = _classifier()
    description = initialize(model, pretrained=tiny_checkpoints[fmt])
    assert f"{fmt} layout, backbone and head ({TINY_CLASSES} classes)" in description
    np.testing.assert_allclose(_logits(model), reference["logits"], atol=1e-4, rtol=0)


def test_pth_on_another_filesystem(tiny_checkpoints, reference):
    remote = "ram://warm_start/tiny_official.pth"  # as gs://: read through tf.io.gfile
    tf.io.gfile.copy(tiny_checkpoints["official"], remote, overwrite=True)
    model = _classifier()
    assert initialize(model, pretrained=remote).startswith(f"pretrained checkpoint {remote}: ")
    np.testing.assert_allclose(_logits(model), reference["logits"], atol=1e-4, rtol=0)
    with pytest.raises(CheckpointError, match=r"ram://warm_start/absent\.pth: cannot read"):
        initialize(model, pretrained="ram://warm_start/absent.pth")


def test_pth_on_s3(tiny_checkpoints, reference, s3_env):
    """--pretrained s3://... (AWS S3, MinIO): read through data.storage's S3 client."""
    s3_env.create_bucket(Bucket="checkpoints")
    s3_env.upload_file(tiny_checkpoints["official"], "checkpoints", "tiny_official.pth")
    model = _classifier()
    remote = "s3://checkpoints/tiny_official.pth"
    assert initialize(model, pretrained=remote).startswith(f"pretrained checkpoint {remote}: ")
    np.testing.assert_allclose(_logits(model), reference["logits"], atol=1e-4, rtol=0)
    with pytest.raises(CheckpointError, match=r"s3://checkpoints/absent\.pth: cannot read"):
        initialize(model, pretrained="s3://checkpoints/absent.pth")


def test_pth_head_replaced_when_classes_differ(tiny_checkpoints, reference):
    model = _classifier(num_classes=3)
    head = _head(model)
    description = initialize(model, pretrained=tiny_checkpoints["official"])
    assert f"head replaced ({TINY_CLASSES} -> 3 classes)" in description
    np.testing.assert_allclose(_features(model), reference["features"], atol=1e-4, rtol=0)
    for before, after in zip(head, _head(model), strict=True):
        np.testing.assert_array_equal(before, after)


def test_pth_without_head(tiny_checkpoints, reference):
    model = _classifier()
    head = _head(model)
    description = initialize(model, pretrained=tiny_checkpoints["official_no_head"])
    assert "backbone only (the source has no head)" in description
    np.testing.assert_allclose(_features(model), reference["features"], atol=1e-4, rtol=0)
    np.testing.assert_array_equal(_head(model)[0], head[0])


def test_converted_directory(tiny_converted, reference):
    model = _classifier()
    description = initialize(model, pretrained=tiny_converted["official"])
    assert description.startswith(f"converted checkpoint {tiny_converted['official']}")
    assert "backbone and head" in description
    np.testing.assert_allclose(_logits(model), reference["logits"], atol=1e-4, rtol=0)
    other = _classifier(num_classes=9)
    assert "head replaced (5 -> 9" in initialize(other, pretrained=tiny_converted["official"])
    backbone_only = _classifier()
    head = _head(backbone_only)
    backbone_module = os.path.join(tiny_converted["official"], hub.BACKBONE_DIR)
    description = initialize(backbone_only, pretrained=backbone_module)
    assert "backbone only (the source has no head)" in description
    np.testing.assert_allclose(_features(backbone_only), reference["features"], atol=1e-4, rtol=0)
    np.testing.assert_array_equal(_head(backbone_only)[0], head[0])


def test_base_model_takes_precedence(base_model, tiny_checkpoints):
    artifact_uri, trained = base_model
    model = _classifier(seed=1)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="mse")
    description = initialize(
        model, base_model=artifact_uri, pretrained=tiny_checkpoints["torchvision"]
    )
    assert description.startswith(f"base model {artifact_uri}: backbone and head")
    for ours, theirs in zip(model.variables, trained.variables, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.name)
    assert int(model.optimizer.iterations.numpy()) == 0  # no optimizer state carried over


def test_base_model_holding_only_the_variables(base_model, tmp_path):
    """model/export.py's layout: `classifier` tracks the weights (in model.variables order)
    but not the Keras model, whose per-layer traces would make the export slow."""
    _, trained = base_model
    module = tf.Module()
    module.classifier = tf.train.Checkpoint(variables=list(trained.variables))
    tf.saved_model.save(module, str(tmp_path))
    model = _classifier(seed=3)
    assert "backbone and head" in initialize(model, base_model=str(tmp_path))
    np.testing.assert_array_equal(_logits(model), _logits(trained))


def test_base_model_with_other_classes_restores_the_backbone(base_model):
    artifact_uri, trained = base_model
    model = _classifier(num_classes=7, seed=2)
    head = _head(model)
    description = initialize(model, base_model=os.path.join(artifact_uri, "Format-Serving"))
    assert f"head replaced ({TINY_CLASSES} -> 7 classes)" in description
    np.testing.assert_array_equal(_features(model), _features(trained))
    for before, after in zip(head, _head(model), strict=True):
        np.testing.assert_array_equal(before, after)


def test_wrong_variant_and_corrupt_sources_name_the_path(base_model, tiny_checkpoints, tmp_path):
    artifact_uri, _ = base_model
    other_window = _classifier(variant="tiny_w4")  # same depth and widths, other window
    with pytest.raises(CheckpointError, match=rf"{artifact_uri}.*shape .*another Video Swin"):
        initialize(other_window, base_model=artifact_uri)
    pth = tiny_checkpoints["official"]
    with pytest.raises(CheckpointError, match=rf"{pth}: does not fit Video Swin 'tiny_w4'"):
        initialize(other_window, pretrained=pth)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(pathlib.Path(pth).read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"truncated\.pth: a damaged zip"):
        initialize(_classifier(), pretrained=str(truncated))
    with pytest.raises(CheckpointError, match=r"nowhere: base model directory does not exist"):
        initialize(_classifier(), base_model=str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointError, match=rf"{tmp_path}: not a readable SavedModel"):
        initialize(_classifier(), pretrained=str(tmp_path))
