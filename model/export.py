"""The served model: raw examples or frames in, class probabilities and names out.

A Format-Serving SavedModel that needs nothing from this repository:
  serving_default(examples: string [B])   serialized tf.Examples of the ingest format (only
                                          `frames` is read) -> the Transform graph -> centre
                                          clip and centre crop -> classifier
  serving_views(examples: string [B])     the same, averaged over the evaluation views: `clips`
                                          clips x `crops` crops per video (model/clip.py
                                          view_clips, mmaction2's test protocol), softmax
                                          probabilities averaged (mmaction's average_clips='prob')
  serving_frames(frames: uint8 [B, T, H, W, 3])  an already sampled clip -> centre crop -> classifier
  outputs: probabilities [B, K], classes [B, k] (names, best first), scores [B, k], k = min(5, K);
  serving_views also single_view_probabilities [B, K] (serving_default's answer, for TFMA to
  report both protocols from one pass; free when the views include the centre view)
Root attributes: `classifier.variables` (the Video Swin's weights in build_classifier's order, for
warm starts: model/warm_start.py), `transform_graph` (the loaded Transform SavedModel: kept
tracked, or serving fails with "Table not initialized"), `class_names`, and `classify` (uint8
clips [B, T, S, S, 3] -> probabilities [B, K], what every signature calls).

Clips are decoded and classified in chunks of `chunk_size` clips, so memory stays bounded
whatever batch a caller sends (TFMA batches up to 1000 examples; a decoded 32x224 clip is 4.8 MB
as uint8, 19 MB as float32, and Swin-T's activations are far larger), however many views.

Export time: the Keras classifier is traced once, into one function every signature calls, and
no Keras object is tracked. Tracking TFT's TransformFeaturesLayer (a Keras Model) made
tf.saved_model.save trace it as a Keras model with AutoGraph: most of a tiny model's export.
"""

from __future__ import annotations

import functools
import itertools
import os

import tensorflow as tf

from data import features as F
from data import storage
from model import clip as clip_lib
from model import preprocessing, warmup

TOP_K = 5
PROBABILITIES, CLASSES, SCORES = "probabilities", "classes", "scores"
SINGLE_VIEW_PROBABILITIES = "single_view_probabilities"
EXAMPLES_INPUT = "examples"  # never `frames`: TFMA feeds serialized examples to this input
FRAMES_SIGNATURE = "serving_frames"
VIEWS_SIGNATURE = "serving_views"
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


def transform_graph(tft_layer) -> tf.Module:
    """The loaded Transform SavedModel that TFT's TransformFeaturesLayer applies: what the export
    must track (its vocabulary tables and assets) without tracking the Keras layer itself."""
    return tft_layer._saved_model_loader._imported


class ServingModel(tf.Module):
    """What the Pusher ships: the classifier, the Transform graph and the class names.

    views: (clips, crops) of serving_views, e.g. (4, 3) as Video Swin reports on Kinetics;
    (1, 1) makes serving_views give serving_default's probabilities.
    """

    def __init__(
        self,
        classifier,
        tft_layer,
        class_names: list[str],
        clip_frames: int,
        image_size: int,
        chunk_size: int = 8,
        views: tuple[int, int] = (1, 1),
    ):
        super().__init__()
        # The classifier's weights in model.variables order (what warm starts read back); the
        # Keras model itself is called, not tracked: saving it would trace every Keras layer.
        self.classifier = tf.train.Checkpoint(variables=list(classifier.variables))
        self._classifier = functools.partial(classifier, training=False)
        # Likewise the tft layer: its Transform graph is tracked, the Keras wrapper only called.
        self.transform_graph = transform_graph(tft_layer)
        self._transform = tft_layer.__call__
        self.class_names = tf.Variable(class_names, dtype=tf.string, trainable=False)
        self._clip_frames, self._size, self._chunk = clip_frames, image_size, chunk_size
        self._k = min(TOP_K, len(class_names))
        self._probs = tf.TensorSpec([len(class_names)], tf.float32)
        self._views = views
        # One trace of the Keras model, called by every signature (a traced function per
        # signature would each trace the whole classifier again, and be saved again). Every
        # function has an input signature, so that tf.saved_model.save traces each once: a
        # trace made before saving is made again in the save context.
        clips = tf.TensorSpec([None, clip_frames, image_size, image_size, 3], tf.uint8, "clips")
        self.classify = tf.function(self._classify, input_signature=[clips], autograph=False)
        frames = tf.TensorSpec([None, clip_frames, None, None, 3], tf.uint8, F.FRAMES)
        self.serve_frames = tf.function(
            self._serve_frames, input_signature=[frames], autograph=False
        )

    def _outputs(self, probabilities: tf.Tensor) -> dict[str, tf.Tensor]:
        top = tf.math.top_k(probabilities, k=self._k)
        return {
            PROBABILITIES: probabilities,
            CLASSES: tf.gather(self.class_names, top.indices),
            SCORES: top.values,
        }

    def _classify(self, clips_uint8: tf.Tensor) -> tf.Tensor:
        """uint8 [c, T, S, S, 3] -> [c, K] probabilities."""
        logits = self._classifier(clip_lib.normalize(clips_uint8))
        return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

    def _jpegs(self, examples: tf.Tensor) -> tf.Tensor:
        """Serialized examples [B] -> the Transform's clip, [B, L] JPEG strings (L static)."""
        raw = tf.io.parse_example(examples, {F.FRAMES: tf.io.VarLenFeature(tf.string)})
        return self._transform(raw)[preprocessing.CLIP]

    def _centre_view(self, jpegs: tf.Tensor) -> tuple[int, int]:
        (start,) = clip_lib.view_offsets(jpegs.shape[1], self._clip_frames, 1)
        return start, clip_lib.CENTRE

    def _classify_views(self, jpegs: tf.Tensor, views: list[tuple[int, int]]) -> tf.Tensor:
        """[B, L] JPEG strings -> [B, V, K] probabilities of each (first frame, crop position)
        view, at most chunk_size clips (and the frames of their videos) at a time."""
        t, s, n = self._clip_frames, self._size, len(views)

        def classify_videos(rows):  # [c, L] -> [c, V, K]
            clips = tf.map_fn(
                lambda row: clip_lib.view_clips(row, t, s, views),
                rows,
                fn_output_signature=tf.TensorSpec([n, t, s, s, 3], tf.uint8),
            )
            flat = tf.reshape(clips, [-1, t, s, s, 3])
            probabilities = _in_chunks(self.classify, flat, self._chunk, self._probs)
            return tf.reshape(probabilities, [-1, n, self._probs.shape[0]])

        videos_per_chunk = max(1, self._chunk // n)
        output = tf.TensorSpec([n, *self._probs.shape], tf.float32)
        return _in_chunks(classify_videos, jpegs, videos_per_chunk, output)

    # autograph=False: nothing here needs it, and converting the model made saving take minutes.
    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)], autograph=False
    )
    def serve_examples(self, examples):
        jpegs = self._jpegs(examples)
        return self._outputs(self._classify_views(jpegs, [self._centre_view(jpegs)])[:, 0])

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)], autograph=False
    )
    def serve_views(self, examples):
        jpegs = self._jpegs(examples)
        clips, crops = self._views
        offsets = clip_lib.view_offsets(jpegs.shape[1], self._clip_frames, clips)
        views = list(itertools.product(offsets, clip_lib.crop_positions(crops)))
        centre = self._centre_view(jpegs)
        computed = views if centre in views else [*views, centre]  # e.g. an even clip count
        probabilities = self._classify_views(jpegs, computed)
        outputs = self._outputs(tf.reduce_mean(probabilities[:, : len(views)], axis=1))
        outputs[SINGLE_VIEW_PROBABILITIES] = probabilities[:, computed.index(centre)]
        return outputs

    def _serve_frames(self, frames):
        probabilities = _in_chunks(
            lambda x: self.classify(clip_lib.frames_clip(x, self._size)),
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
    tf.saved_model.save(
        module,
        export_dir,
        signatures={
            "serving_default": module.serve_examples,
            VIEWS_SIGNATURE: module.serve_views,
            FRAMES_SIGNATURE: module.serve_frames,
        },
    )
    # TF Serving's warm-up records (assets.extra/): TF Serving, KServe and `python -m serving`
    # replay them before a version takes traffic.
    warmup.write_requests(export_dir, frame_size=module._size)
