"""A small SavedModel with the exported model's serving contract (see model/export.py).

Until the Trainer's export is used here, the serving tests and the load benchmark serve this:
the same signatures, inputs and outputs, the same kind of evaluation preprocessing, a real
(tiny) Video Swin classifier, or for speed a small Conv3D one (variant=None), with seeded random
weights, so its outputs are deterministic.

  serving_default: examples tf.string [None] (serialized tf.Example, `frames` = JPEG bytes)
  serving_frames:  frames tf.uint8 [None, T, None, None, 3]
  both ->          probabilities float32 [None, K], classes tf.string [None, k],
                   scores float32 [None, k], k = min(5, K)
  assets.extra/tf_serving_warmup_requests: one request per signature (model/warmup.py)
"""

from __future__ import annotations

import os
import shutil

import tensorflow as tf

from data import features
from model import warmup
from model.clip import normalize
from model.video_swin import build_classifier

CLASS_NAMES = ("ShiftLeft", "ShiftRight", "ShiftUp", "ShiftDown", "PulseSlow", "PulseFast")


class ContractModel(tf.Module):
    def __init__(self, variant: str | None, class_names, frames: int, size: int, seed: int):
        super().__init__()
        tf.keras.utils.set_random_seed(seed)
        shape = (frames, size, size, 3)
        if variant:
            self.classifier = build_classifier(variant, len(class_names), shape)
        else:  # a few layers: saves in seconds where a Video Swin takes ~10 s per trace
            self.classifier = tf.keras.Sequential(
                [
                    tf.keras.Input(shape),
                    tf.keras.layers.Conv3D(8, 3, strides=2, activation="relu"),
                    tf.keras.layers.GlobalAveragePooling3D(),
                    tf.keras.layers.Dense(len(class_names)),
                ]
            )
        self._class_names = tf.constant(list(class_names))
        self._frames, self._size, self._k = frames, size, min(5, len(class_names))

    def _predict(self, clips):
        """uint8 [B, T, H, W, 3] -> the three outputs; centre square crop, resize, normalise."""
        shape = tf.shape(clips)
        height, width = shape[2], shape[3]
        side = tf.minimum(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        crop = clips[:, :, top : top + side, left : left + side, :]
        flat = tf.reshape(crop, tf.concat([[-1], tf.shape(crop)[2:]], 0))
        resized = tf.image.resize(flat, (self._size, self._size), antialias=True)
        resized = tf.reshape(resized, [-1, self._frames, self._size, self._size, 3])
        probabilities = tf.nn.softmax(self.classifier(normalize(resized), training=False))
        scores, indices = tf.math.top_k(probabilities, k=self._k)
        return {
            "probabilities": probabilities,
            "classes": tf.gather(self._class_names, indices),
            "scores": scores,
        }

    def _clip_from_example(self, serialized):
        """One serialized example -> uint8 [T, H, W, 3]: the centre T stored frames."""
        parsed = tf.io.parse_single_example(
            serialized, {features.FRAMES: tf.io.VarLenFeature(tf.string)}
        )
        jpegs = parsed[features.FRAMES].values
        count = tf.size(jpegs)
        tf.debugging.assert_positive(count, message="example has no frames")
        start = tf.maximum(0, (count - self._frames) // 2)
        # Fewer stored frames than T: repeat the last one.
        indices = tf.minimum(start + tf.range(self._frames), count - 1)
        return tf.map_fn(
            lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3),
            tf.gather(jpegs, indices),
            fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
        )

    def serving_default(self, examples):
        clips = tf.map_fn(
            self._clip_from_example,
            examples,
            fn_output_signature=tf.TensorSpec([self._frames, None, None, 3], tf.uint8),
        )
        return self._predict(clips)

    def serving_frames(self, frames):
        return self._predict(frames)


def save_contract_models(
    export_dirs,
    variant: str | None = "tiny_w4",
    class_names=CLASS_NAMES,
    frames: int = 8,
    size: int = 32,
    seed: int = 0,
) -> list[str]:
    """Writes one SavedModel per directory in `export_dirs`, each with different weights (the
    head is re-drawn: tracing once and saving again is much faster than a new model), with
    warm-up requests as the export writes them."""
    module = ContractModel(variant, class_names, frames, size, seed)
    signatures = {
        "serving_default": tf.function(
            module.serving_default,
            input_signature=[tf.TensorSpec([None], tf.string, name="examples")],
        ).get_concrete_function(),
        "serving_frames": tf.function(
            module.serving_frames,
            input_signature=[tf.TensorSpec([None, frames, None, None, 3], tf.uint8, name="frames")],
        ).get_concrete_function(),
    }
    rng = tf.random.Generator.from_seed(seed)
    for i, export_dir in enumerate(export_dirs):
        if i:
            for weight in module.classifier.layers[-1].trainable_weights:
                weight.assign(rng.normal(weight.shape, stddev=0.5))
        tf.saved_model.save(module, os.fspath(export_dir), signatures=signatures)
        warmup.write_requests(os.fspath(export_dir), frame_size=size)
    return [os.fspath(d) for d in export_dirs]


def push(export_dir, base_dir, version: int) -> str:
    """Copies a SavedModel to `base_dir`/`version`/ as TFX's Pusher does: saved_model.pb last."""
    target = os.path.join(os.fspath(base_dir), str(version))
    shutil.copytree(export_dir, target, ignore=shutil.ignore_patterns("saved_model.pb"))
    shutil.copy(os.path.join(export_dir, "saved_model.pb"), target)
    return target
