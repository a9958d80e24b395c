"""The Trainer's input pipeline: raw examples -> the Transform graph -> uint8 clips and labels.

Training reads the raw examples (the Transform only analyses; one stored copy) and applies the
transform graph as it reads them, then cuts a clip of T frames from the L sampled frames
(model/clip.py): a random offset and resized crop in training, the centre in evaluation. A bad
label fails at its batch, naming the video (DataError). Epoch sizes come from counts.json.
"""

from __future__ import annotations

import re
import sys

import tensorflow as tf
from absl import logging

from data import counts
from data import features as F
from model import clip as clip_lib
from model import preprocessing
from model.options import TrainOptions


def read_class_names(tf_transform_output) -> list[str]:
    """The Transform's class vocabulary in label order; a missing label is an error."""
    keys = [
        k.decode() if isinstance(k, bytes) else k
        for k in tf_transform_output.vocabulary_by_name(preprocessing.CLASSES_VOCABULARY)
    ]
    pairs = sorted(preprocessing.parse_class_key(k) for k in keys)
    labels = [label for label, _ in pairs]
    if labels != list(range(len(labels))):
        raise ValueError(
            f"the training split's labels must be 0..K-1, each with one name; got {pairs}"
        )
    return [name for _, name in pairs]


def _files(patterns) -> list[str]:
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {patterns}")
    return files


class DataError(ValueError):
    """Examples that cannot be trained on; the message names the video."""


# The Transform's inputs: what the Trainer parses from a raw example (the rest is metadata).
TRANSFORM_INPUTS = (F.FRAMES, F.LABEL, F.LABEL_NAME, F.VIDEO_ID)
_BAD_LABEL = "label not among the classes of the training split, video"  # no quote: TF escapes it
_BAD_LABEL_VIDEO = re.compile(re.escape(_BAD_LABEL) + r"\] \[([^\]]*)\]")


def transform_fn(tf_transform_output, tft_layer=None):
    """A serialized raw example (scalar string) -> the Transform's outputs for it:
    {clip: [L] JPEG strings, label: int64 scalar, video_id: string scalar}.

    The Transform graph runs here, in tf.data, on the examples VideoExampleGen stored, so no
    transformed copy of the data set is ever written (the Transform only analyses).
    """
    raw_spec = tf_transform_output.raw_feature_spec()
    spec = {name: raw_spec[name] for name in TRANSFORM_INPUTS}
    layer = tft_layer or tf_transform_output.transform_features_layer()

    def transform(record):
        transformed = layer(tf.io.parse_example(record[None], spec))
        return {name: value[0] for name, value in transformed.items()}

    return transform


def count_examples(patterns) -> int:
    """The examples in the split, from the counts written beside them (data/counts.py); examples
    made elsewhere, without that file, are counted by one read of the split."""
    known = counts.read(patterns)
    if known is not None:
        return known
    logging.warning(
        "no %s beside %s: counting its records (one read)", counts.COUNTS_FILE, patterns
    )
    dataset = tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP")
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def _complete_jpegs(example) -> tf.Tensor:
    """False (and a message naming the video) when a frame lacks JPEG's start or end marker:
    cut or damaged data is skipped, not a bare decode error deep inside fit()."""
    jpegs = example[preprocessing.SAMPLED_FRAMES]
    ok = tf.reduce_all(
        (tf.strings.substr(jpegs, 0, 2) == b"\xff\xd8")
        & (tf.strings.substr(jpegs, -2, 2) == b"\xff\xd9")
    )

    def report():
        message = tf.print(
            "skipping",
            example[F.VIDEO_ID],
            ": a frame is not a complete JPEG",
            output_stream=sys.stderr,
        )
        with tf.control_dependencies([message]):
            return tf.identity(ok)

    return tf.cond(ok, lambda: ok, report)


def _checked_label(example, num_classes: int) -> tf.Tensor:
    """The label; an error naming the video when it is not one of the classes (the Transform
    gives -1 to a label/label_name pair its training-split vocabulary lacks)."""
    label = example[F.LABEL]
    check = tf.debugging.Assert(
        (label >= 0) & (label < num_classes), [_BAD_LABEL, example[F.VIDEO_ID]]
    )
    with tf.control_dependencies([check]):
        return tf.identity(label)


def data_error(error: tf.errors.InvalidArgumentError, num_classes: int) -> DataError | None:
    """A readable DataError for a bad label's assertion; None for any other error."""
    found = _BAD_LABEL_VIDEO.search(error.message)
    if not found:
        return None
    return DataError(
        f"{found.group(1)}: its label/label_name pair is not one of the training split's "
        f"{num_classes} classes (the Transform's class vocabulary). Fix its label or list, or "
        "add the class to the training split."
    )


def make_dataset(
    patterns,
    transform,
    options: TrainOptions,
    num_classes: int,
    batch_size: int,
    training: bool,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Examples -> (uint8 clips [B, T, S, S, 3], one-hot labels [B, K]).

    transform: a serialized example -> {clip, label, video_id} (`transform_fn`: the Transform
    graph on raw examples). Training: this input pipeline's shard of the records, shuffled and
    repeated, random clips, full batches only. Evaluation: one deterministic pass, centre clips,
    the last batch partial. A label outside the classes stops iteration at its batch (an
    InvalidArgumentError naming the video: `data_error`).
    """
    files = _files(patterns)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if training:
        dataset = dataset.shuffle(len(files))
    dataset = dataset.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        cycle_length=min(len(files), 4),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=options.deterministic or not training,
    )
    if training and input_context and input_context.num_input_pipelines > 1:
        # Shard records before decoding: each worker decodes only its own clips.
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if training:
        dataset = dataset.shuffle(options.shuffle_buffer).repeat()
    # Each element's augmentation seed: (run seed, position in this pipeline's stream), so a
    # clip's random draws do not depend on which parallel call makes them.
    pipelines, pipeline_id = (
        (input_context.num_input_pipelines, input_context.input_pipeline_id)
        if input_context
        else (1, 0)
    )
    dataset = (
        dataset.enumerate()
        .map(
            lambda i, r: (i * pipelines + pipeline_id, transform(r)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=options.deterministic or not training,
        )
        .filter(lambda _, example: _complete_jpegs(example))
    )

    def to_inputs(position, example):
        clip = clip_lib.jpeg_clip(
            example[preprocessing.SAMPLED_FRAMES],
            options.clip_frames,
            options.image_size,
            training=training,
            area_range=(options.min_crop_area, 1.0),
            flip=options.flip,
            seed=tf.stack([tf.constant(options.seed, tf.int64), position]) if training else None,
        )
        return clip, tf.one_hot(_checked_label(example, num_classes), num_classes)

    dataset = dataset.map(
        to_inputs,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=options.deterministic or not training,
    )
    dataset = dataset.batch(batch_size, drop_remainder=training)
    if not training:
        opts = tf.data.Options()
        opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(opts)
    return dataset.prefetch(tf.data.AUTOTUNE)
