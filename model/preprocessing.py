"""tf.Transform: a video's variable-length frames -> a fixed temporal cover of JPEG strings.

No pixel is decoded here: this graph also runs inside every served request (the tft layer of
the exported model), and Beam batches of decoded video would not fit in memory. Output per
example: `sampled_frames`, L JPEG strings (the embedded set: 16 x ~0.4 kB; UCF101 at
320x240: 64 x ~15-40 kB = ~1-2.5 MB), `label` and `video_id`.

Temporal cover (deterministic): a video of n stored frames (uniform in time, see data/ingest.py)
gives L = sampled_frames indices; n >= L: floor((i + 1/2) n / L), the whole video at a step of
n/L frames; n < L: i mod n, the video looped (mmaction's SampleFrames out_of_bound_opt='loop').
The Trainer then takes T consecutive frames of the L: anywhere in training, the centre in
evaluation (model/clip.py).

The class list is an analyzer over the training split: the vocabulary `classes` of
"<label>:<label_name>" pairs (model/inputs.py reads it back in label order). An example whose pair
is not in it (a class the training split lacks, a label that disagrees with its name) gets label
-1, and the Trainer, which runs this graph on the raw examples as it reads them, stops at that
example's batch, naming its video_id. (A tf.debugging.Assert here would also run while the
analyzers are computed, before the vocabulary exists.)
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from data import features as F

# Transformed: the L frames covering the video ([L] JPEG strings), from which clips of T frames
# are cut (model/clip.py); named as TrainOptions.sampled_frames, its length.
SAMPLED_FRAMES = "sampled_frames"
CLASSES_VOCABULARY = "classes"
SAMPLED_FRAMES_KEY = "sampled_frames"  # custom_config key
UNKNOWN_LABEL = -1


def temporal_cover(num_frames: tf.Tensor, length: int) -> tf.Tensor:
    """[B] frame counts -> [B, length] int64 indices (uniform cover, or looped when short)."""
    n = tf.cast(num_frames, tf.float64)[:, None]
    i = tf.range(length, dtype=tf.float64)[None, :]
    cover = tf.floor((i + 0.5) * n / length)
    looped = tf.math.floormod(i, tf.maximum(n, 1.0))
    return tf.cast(tf.where(n >= length, cover, looped), tf.int64)


def class_key(label: tf.Tensor, label_name: tf.Tensor) -> tf.Tensor:
    """ "000003:ShiftDown": sortable by label, and the vocabulary entry of a class."""
    return tf.strings.join([tf.strings.as_string(label, width=6, fill="0"), label_name], ":")


def parse_class_key(key: str) -> tuple[int, str]:
    label, _, name = key.partition(":")
    return int(label), name


def _dense_column(x) -> tf.Tensor:
    """A [B, 1] sparse or dense feature -> [B]."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(x)
    return tf.reshape(x, [-1])


def preprocessing_fn(inputs: dict, custom_config: dict) -> dict:
    """Raw features -> {sampled_frames: [B, L] string, label: [B] int64, video_id: [B] string}."""
    length = int(custom_config[SAMPLED_FRAMES_KEY])
    frames = tf.RaggedTensor.from_sparse(inputs[F.FRAMES])
    counts = frames.row_lengths()
    # Only `frames` may be fed at serving time, so the cover depends on nothing else (an example
    # without frames is an ExampleValidator anomaly; its JPEG decode fails in the Trainer).
    sampled = tf.gather(frames.to_tensor(""), temporal_cover(counts, length), batch_dims=1)
    video_id = _dense_column(inputs[F.VIDEO_ID])
    outputs = {SAMPLED_FRAMES: tf.ensure_shape(sampled, [None, length]), F.VIDEO_ID: video_id}

    label = _dense_column(inputs[F.LABEL])
    keys = class_key(label, _dense_column(inputs[F.LABEL_NAME]))
    vocabulary = tft.vocabulary(keys, vocab_filename=CLASSES_VOCABULARY)
    known = tft.apply_vocabulary(keys, vocabulary, default_value=-1) >= 0
    outputs[F.LABEL] = tf.where(known, label, tf.constant(UNKNOWN_LABEL, tf.int64))
    return outputs
