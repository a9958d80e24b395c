"""The serving model's signatures: multi-view evaluation against single views one by one.

A real Transform graph (model.preprocessing analysed by tf.Transform over a few examples), a
tiny Video Swin with random weights, real JPEG frames, saved and loaded back with TensorFlow.
"""

import functools

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata

from data import example_proto, video
from data import features as F
from model import clip as clip_lib
from model import export, preprocessing
from model.video_swin import build_classifier

CLASSES = ("Walk", "Run", "Jump")
L, T, S = 12, 4, 32  # the Transform's cover, the clip, the crop
HEIGHT, WIDTH = 40, 64  # landscape: three crops along the width, 12 pixels apart


@pytest.fixture(scope="module")
def transform_output(tmp_path_factory):
    root = tmp_path_factory.mktemp("transform")
    spec = {
        F.FRAMES: tf.io.VarLenFeature(tf.string),
        F.LABEL: tf.io.FixedLenFeature([1], tf.int64),
        F.LABEL_NAME: tf.io.FixedLenFeature([1], tf.string),
        F.VIDEO_ID: tf.io.FixedLenFeature([1], tf.string),
    }
    rows = [
        {F.FRAMES: [b"x"], F.LABEL: [i], F.LABEL_NAME: [n.encode()], F.VIDEO_ID: [b"v"]}
        for i, n in enumerate(CLASSES)
    ]
    fn = functools.partial(
        preprocessing.preprocessing_fn, custom_config={preprocessing.SAMPLED_FRAMES_KEY: L}
    )
    metadata = dataset_metadata.DatasetMetadata.from_feature_spec(spec)
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=str(root / "tmp")):
        transform_fn = (pipeline | beam.Create(rows), metadata) | tft_beam.AnalyzeDataset(fn)
        _ = transform_fn | tft_beam.WriteTransformFn(str(root / "graph"))
    return tft.TFTransformOutput(str(root / "graph"))


def _export(transform_output, path, views) -> tf.Module:
    tf.keras.utils.set_random_seed(0)
    classifier = build_classifier("tiny_w4", len(CLASSES), (T, S, S, 3))
    layer = transform_output.transform_features_layer()
    module = export.ServingModel(classifier, layer, list(CLASSES), T, S, chunk_size=5, views=views)
    export.save(module, str(path))
    return tf.saved_model.load(str(path))


def _videos(count: int) -> list[list[bytes]]:
    """Videos of L noise frames (L stored frames: the Transform's cover is every frame)."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (count, L, HEIGHT, WIDTH, 3), dtype=np.uint8)
    return [[video.encode_jpeg(f) for f in v] for v in frames]


def _examples(videos) -> tf.Tensor:
    return tf.constant([example_proto.make_example({F.FRAMES: v}) for v in videos])


@pytest.fixture(scope="module")
def views_4x3(transform_output, tmp_path_factory):
    return _export(transform_output, tmp_path_factory.mktemp("export") / "4x3", (4, 3))


def test_multi_view_probabilities_are_the_mean_of_each_view_computed_alone(views_4x3):
    """4 clips x 3 crops, each view classified alone through serving_frames from frames this
    test crops itself: clips start at 0, 2.67, 5.33, 8 (floored) of L - T = 8; crops are the
    40x40 squares at x = 0, 12, 24."""
    videos = _videos(3)
    served = views_4x3.signatures[export.VIEWS_SIGNATURE](examples=_examples(videos))
    for jpegs, probabilities in zip(videos, served[export.PROBABILITIES].numpy(), strict=True):
        frames = np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs])
        alone = []
        for start in (0, 2, 5, 8):
            for x in (0, 12, 24):
                clip = frames[None, start : start + T, :, x : x + HEIGHT]
                out = views_4x3.signatures[export.FRAMES_SIGNATURE](frames=tf.constant(clip))
                alone.append(out[export.PROBABILITIES].numpy()[0])
        alone = np.stack(alone)
        # The views differ (a mean of 12 copies of one view would not pass) ...
        assert np.ptp(alone, axis=0).max() > 1e-3
        # ... and the signature averages exactly these 12.
        np.testing.assert_allclose(probabilities, alone.mean(axis=0), atol=1e-6)
    scores = served[export.SCORES].numpy()
    np.testing.assert_allclose(
        scores, -np.sort(-served[export.PROBABILITIES].numpy(), axis=1), atol=1e-7
    )


def test_multi_view_signature_also_gives_serving_defaults_answer(views_4x3):
    """The single view (centre clip, centre crop), computed beside the 12 views (4 clips: the
    centre clip is not one of them) for TFMA to report both protocols in one pass."""
    examples = _examples(_videos(4))
    views = views_4x3.signatures[export.VIEWS_SIGNATURE](examples=examples)
    default = views_4x3.signatures["serving_default"](examples=examples)
    np.testing.assert_allclose(
        views[export.SINGLE_VIEW_PROBABILITIES].numpy(),
        default[export.PROBABILITIES].numpy(),
        atol=1e-6,
    )
    assert not np.allclose(
        views[export.PROBABILITIES].numpy(), default[export.PROBABILITIES].numpy(), atol=1e-4
    )


def test_one_view_is_serving_default(transform_output, tmp_path):
    model = _export(transform_output, tmp_path / "1x1", (1, 1))
    examples = _examples(_videos(6))  # more than chunk_size: two chunks
    views = model.signatures[export.VIEWS_SIGNATURE](examples=examples)
    default = model.signatures["serving_default"](examples=examples)
    for name in (export.PROBABILITIES, export.SCORES):
        np.testing.assert_allclose(views[name].numpy(), default[name].numpy(), atol=1e-6)
    np.testing.assert_array_equal(views[export.CLASSES].numpy(), default[export.CLASSES].numpy())
    np.testing.assert_array_equal(
        views[export.SINGLE_VIEW_PROBABILITIES].numpy(), views[export.PROBABILITIES].numpy()
    )
    # serving_default is the Trainer's evaluation clip: centre clip, centre square.
    (jpegs,) = _videos(1)
    clip = clip_lib.jpeg_clip(tf.constant(jpegs), T, S, training=False)
    alone = model.signatures[export.FRAMES_SIGNATURE](frames=clip[None])
    np.testing.assert_allclose(
        default[export.PROBABILITIES].numpy()[0], alone[export.PROBABILITIES].numpy()[0], atol=1e-6
    )
