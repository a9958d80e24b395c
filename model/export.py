"""The served model: raw examples or frames in, class probabilities and names out.

A Format-Serving SavedModel that needs nothing from this repository:
  serving_default(examples: string [B])   serialized tf.Examples of the ingest format (only
                                          `frames` is read) -> tft layer (the Transform graph)
                                          -> centre clip and crop -> classifier
  serving_frames(frames: uint8 [B, T, H, W, 3])  an already sampled clip -> centre crop -> classifier
  outputs: probabilities [B, K], classes [B, k] (names, best first), scores [B, k], k = min(5, K)
Root attributes: `classifier.variables` (the Video Swin's weights in build_classifier's order, for
warm starts: model/warm_start.py),
`tft_layer` (kept tracked, or serving fails with "Table not initialized") and `class_names`.

Clips are decoded and classified in chunks of `chunk_size` examples, so memory stays bounded
whatever batch a caller sends (TFMA batches up to 1000 examples; a decoded 32x224 clip is 4.8 MB
as uint8, 19 MB as float32, and Swin-T's activations are far larger).
"""

from __future__ import annotations

import functools
import os

import tensorflow as tf

from data import features as F
from data import storage
from model import clip as clip_lib
from model import preprocessing, warmup

TOP_K = 5
PROBABILITIES, CLASSES, SCORES = "probabilities", "classes", "scores"
EXAMPLES_INPUT = "examples"  # never `frames`: TFMA feeds serialized examples to this input
FRAMES_SIGNATURE = "serving_frames"
SAVED_MODEL = "saved_model.pb"


def _in_chunks(fn, x: tf.Tensor, chunk_size: int, output_spec: tf.TensorSpec) -> tf.Tensor:
    """fn over rows of x in chunks of at most chunk_size, one chunk at a time -> all rows.

    A batch smaller than chunk_size is one chunk of its own size (no padding work).
    """
    batch = tf.shape(x)[0]
    size = tf.maximum(tf.minimum(batch, chunk_size), 1)
    chunks = (batch + size - 1) // size
    pad = chunks * size - batch
    x = tf.concat([x, tf.repeat(x[:1], pad, axis=0)], axis=0)  # pad with copies of row 0
    x = tf.reshape(x, tf.concat([[chunks, size], tf.shape(x)[1:]], axis=0))
    y = tf.map_fn(
        fn,
        x,
        fn_output_signature=tf.TensorSpec([None, *output_spec.shape], output_spec.dtype),
        parallel_iterations=1,  # one chunk in memory at a time
    )
    y = tf.reshape(y, tf.concat([[chunks * size], tf.shape(y)[2:]], axis=0))
    return y[:batch]


class ServingModel(tf.Module):
    """What the Pusher ships: the classifier, the Transform graph and the class names."""

    def __init__(
        self,
        classifier,
        tft_layer,
        class_names: list[str],
        clip_frames: int,
        image_size: int,
        chunk_size: int = 8,
    ):
        super().__init__()
        # The classifier's weights in model.variables order (what warm starts read back); the
        # Keras model itself is called, not tracked: saving it would trace every Keras layer.
        self.classifier = tf.train.Checkpoint(variables=list(classifier.variables))
        self._classifier = functools.partial(classifier, training=False)
        self.tft_layer = tft_layer
        self.class_names = tf.Variable(class_names, dtype=tf.string, trainable=False)
        self._clip_frames, self._size, self._chunk = clip_frames, image_size, chunk_size
        self._k = min(TOP_K, len(class_names))
        self._probs = tf.TensorSpec([len(class_names)], tf.float32)

    def _outputs(self, probabilities: tf.Tensor) -> dict[str, tf.Tensor]:
        top = tf.math.top_k(probabilities, k=self._k)
        return {
            PROBABILITIES: probabilities,
            CLASSES: tf.gather(self.class_names, top.indices),
            SCORES: top.values,
        }

    def _classify(self, clips_uint8: tf.Tensor) -> tf.Tensor:
        logits = self._classifier(clip_lib.normalize(clips_uint8))
        return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

    def _classify_jpegs(self, jpegs: tf.Tensor) -> tf.Tensor:
        """[c, L] JPEG strings -> [c, K] probabilities (evaluation clip and crop)."""
        t, s = self._clip_frames, self._size
        clips = tf.map_fn(
            lambda row: clip_lib.jpeg_clip(row, t, s, training=False),
            jpegs,
            fn_output_signature=tf.TensorSpec([t, s, s, 3], tf.uint8),
        )
        return self._classify(clips)

    # autograph=False: nothing here needs it, and converting the model made saving take minutes.
    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)], autograph=False
    )
    def serve_examples(self, examples):
        raw = tf.io.parse_example(examples, {F.FRAMES: tf.io.VarLenFeature(tf.string)})
        jpegs = self.tft_layer(raw)[preprocessing.CLIP]
        return self._outputs(_in_chunks(self._classify_jpegs, jpegs, self._chunk, self._probs))

    @tf.function(autograph=False)
    def serve_frames(self, frames):
        probabilities = _in_chunks(
            lambda x: self._classify(clip_lib.frames_clip(x, self._size)),
            frames,
            self._chunk,
            self._probs,
        )
        return self._outputs(probabilities)


def holds_saved_model(path: str | None) -> bool:
    """Whether `path` (local, gs:// or s3://: data.storage) holds a SavedModel. TFX's Pusher
    copies saved_model.pb last, so in a pushed version folder it also marks the copy complete."""
    return bool(path) and storage.exists(os.path.join(path, SAVED_MODEL))


def save(module: ServingModel, export_dir: str) -> None:
    frames = module.serve_frames.get_concrete_function(
        tf.TensorSpec([None, module._clip_frames, None, None, 3], tf.uint8, name=F.FRAMES)
    )
    tf.saved_model.save(
        module,
        export_dir,
        signatures={"serving_default": module.serve_examples, FRAMES_SIGNATURE: frames},
    )
    # TF Serving's warm-up records (assets.extra/): TF Serving, KServe and `python -m serving`
    # replay them before a version takes traffic.
    warmup.write_requests(export_dir, frame_size=module._size)
