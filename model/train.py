"""The Trainer: options, input pipeline, distribution strategy, optimisation and `run_fn`.

    Trainer(run_fn="model.train.run_fn", custom_config={"options": TrainOptions(...).to_json()})

The 2022 port's "MirroredStrategy fails after the first epoch" came from a finite dataset plus
steps_per_epoch (tf_keras makes a new iterator each epoch only when the two agree). Here, as in
TFX's own examples, training data repeats (steps_per_epoch = examples // global batch, so every
epoch sees as many clips as the split holds) and evaluation data is one finite pass with
validation_steps=None, a fresh iterator every epoch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time

import tensorflow as tf
import tf_keras as keras
from absl import logging

from data import counts
from data import features as F
from model import clip as clip_lib
from model import preprocessing
from model.options import OPTIONS_KEY, TrainOptions
from model.video_swin import build_classifier

__all__ = ["OPTIONS_KEY", "TrainOptions", "run_fn", "train"]

HISTORY_FILE = "history.json"  # per-epoch metrics, in the model run directory
TRAINING_RECORD = "training.json"  # on the Model artifact: warm start, options, classes
BACKUP_DIR = "backup"  # BackupAndRestore's checkpoints, in the model run directory


# ---------------------------------------------------------------- distribution


def require_gpus(count: int) -> None:
    """Fails, saying why, unless TensorFlow sees at least `count` GPUs (0: no requirement).

    A Trainer that asked for GPUs and silently trained on the CPU would take weeks; this stops it
    in its first seconds instead.
    """
    found = tf.config.list_physical_devices("GPU")
    if len(found) >= count:
        return
    build = tf.sysconfig.get_build_info()
    raise RuntimeError(
        f"{count} GPU(s) requested (TrainOptions.gpus / --gpus) but TensorFlow sees "
        f"{len(found)}: {[d.name for d in found]}. TensorFlow {tf.__version__} was built for "
        f"CUDA {build.get('cuda_version', '?')} / cuDNN {build.get('cudnn_version', '?')} and "
        "loads them from the nvidia-*-cu12 wheels: install them with `make setup GPU=1`, or build "
        "the image with `docker build --build-arg GPU=1`. Check also that `nvidia-smi` lists the "
        "GPUs and that the pod requests them (nvidia.com/gpu)."
    )


def make_strategy(name: str = "auto", gpus: int = 0) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when TF_CONFIG names several tasks, else MirroredStrategy
    over the local devices (all GPUs, or the CPU). gpus: how many GPUs must be visible."""
    require_gpus(gpus)
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    tasks = sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
    if name == "multi_worker" or (name == "auto" and tasks > 1):
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name in ("auto", "mirrored"):
        strategy = tf.distribute.MirroredStrategy()
    else:
        raise ValueError(f"unknown strategy {name!r}: auto, mirrored or multi_worker")
    devices = [d.name for d in tf.config.list_logical_devices() if d.device_type in ("CPU", "GPU")]
    logging.info(
        "%s with %d replica(s); local devices: %s",
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
        ", ".join(devices),
    )
    return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


# ---------------------------------------------------------------- input pipeline


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
    jpegs = example[preprocessing.CLIP]
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
            example[preprocessing.CLIP],
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


# ---------------------------------------------------------------- model and optimisation


class VideoClassifier(keras.Model):
    """uint8 clips [B, T, S, S, 3] -> logits [B, K]: normalises, then the Video Swin classifier.

    Two AdamW optimizers with one schedule shape: `optimizer` for the head, `backbone_optimizer`
    for the backbone at backbone_lr_multiplier x the rate (the official fine-tuning recipe).
    """

    def __init__(self, classifier: keras.Model, **kwargs):
        inputs = keras.Input(classifier.input_shape[1:], dtype=tf.uint8, name="clips")
        outputs = classifier(keras.layers.Lambda(clip_lib.normalize, name="normalize")(inputs))
        super().__init__(inputs, outputs, **kwargs)
        self.classifier = classifier
        self.backbone_optimizer = None
        self.accumulation_steps = 1

    def _groups(self):
        return (
            self.classifier.get_layer("backbone").trainable_variables,
            self.classifier.get_layer("head").trainable_variables,
        )

    # AutoGraph has nothing to convert here (no data-dependent Python control flow), and
    # converting everything it reaches made the first training step take ~60 s on a tiny model.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        x, y = data
        backbone, head = self._groups()
        variables = backbone + head
        k = self.accumulation_steps
        # Gradient accumulation: k micro-batches of batch/k clips, one optimizer step; the
        # micro-batches run one after another, so only one micro-batch's activations live.
        grads, predictions = None, []
        for x_part, y_part in zip(tf.split(x, k), tf.split(y, k), strict=True):
            with tf.control_dependencies(grads or []), tf.GradientTape() as tape:
                y_pred = self(x_part, training=True)
                loss = self.compute_loss(x_part, y_part, y_pred) / k
            part = tape.gradient(loss, variables)
            if k > 1:  # the bias tables' gradients are IndexedSlices (gather): sum them dense
                part = [tf.convert_to_tensor(g) for g in part]
            grads = part if grads is None else [a + b for a, b in zip(grads, part, strict=True)]
            predictions.append(y_pred)
        y_pred = predictions[0] if k == 1 else tf.concat(predictions, axis=0)
        self.backbone_optimizer.apply_gradients(zip(grads[: len(backbone)], backbone, strict=False))
        self.optimizer.apply_gradients(zip(grads[len(backbone) :], head, strict=False))
        return self.compute_metrics(x, y, y_pred, None)

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data):
        return super().test_step(data)

    @tf.autograph.experimental.do_not_convert
    def predict_step(self, data):
        return super().predict_step(data)


def make_optimizer(options: TrainOptions, peak: float, steps_per_epoch: int):
    """AdamW on a linear warm-up + cosine decay schedule (Keras' own)."""
    total = max(1, options.epochs * steps_per_epoch)
    warmup = min(total - 1, int(round(options.warmup_epochs * steps_per_epoch)))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else peak,
        decay_steps=total - warmup,
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=options.weight_decay,
        global_clipnorm=options.clip_norm or None,
    )
    # The official recipe decays no norm, bias-table or bias parameter.
    optimizer.exclude_from_weight_decay(var_names=["norm", "relative_position_bias_table", "bias"])
    return optimizer


def build_model(options: TrainOptions, num_classes: int, steps_per_epoch: int) -> VideoClassifier:
    """The compiled training model (call inside the strategy's scope)."""
    keras.mixed_precision.set_global_policy(options.precision)
    classifier = build_classifier(
        options.variant,
        num_classes,
        options.clip_shape,
        recompute=options.recompute,
        drop_path_rate=None if options.drop_path_rate < 0 else options.drop_path_rate,
    )
    model = VideoClassifier(classifier, name=f"video_swin_{options.variant}_clips")
    k = min(5, num_classes)
    model.compile(
        optimizer=make_optimizer(options, options.learning_rate, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=options.label_smoothing
        ),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(k=k, name=f"top{k}_accuracy"),
        ],
        jit_compile=options.jit_compile,
    )
    model.backbone_optimizer = make_optimizer(
        options, options.learning_rate * options.backbone_lr_multiplier, steps_per_epoch
    )
    model.accumulation_steps = options.accumulation_steps
    return model


# ---------------------------------------------------------------- training


class _EpochLog(keras.callbacks.Callback):
    """One log line per epoch: how far, how long, how well (fit itself runs with verbose=0)."""

    def __init__(self, epochs: int):
        super().__init__()
        self._epochs, self._start = epochs, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in (logs or {}).items())
        logging.info(
            "epoch %d/%d (%.0f s): %s", epoch + 1, self._epochs, time.time() - self._start, metrics
        )


@dataclasses.dataclass
class TrainResult:
    model: VideoClassifier
    history: dict[str, list[float]]
    class_names: list[str]
    steps_per_epoch: int
    train_examples: int


def train(
    options: TrainOptions,
    train_files,
    eval_files,
    tf_transform_output,
    run_dir: str,
    strategy: tf.distribute.Strategy | None = None,
    initialize=None,
    callbacks: list | None = None,
) -> TrainResult:
    """Fits the model; `initialize(classifier)` sets starting weights (the warm start).

    A process killed mid-training and started again with the same run_dir resumes from its last
    checkpoint (epoch, step, both optimizers' state, the schedule's position): BackupAndRestore,
    every `checkpoint_every` steps or every epoch.
    """
    strategy = strategy or make_strategy(options.strategy)
    keras.utils.set_random_seed(options.seed)  # same initial weights and draws every run
    class_names = read_class_names(tf_transform_output)
    # From the counts VideoExampleGen wrote: no read of the splits before the first step.
    train_examples = count_examples(train_files)
    eval_examples = counts.read(eval_files)
    global_batch = options.batch_size * strategy.num_replicas_in_sync
    steps_per_epoch = max(1, train_examples // global_batch)
    logging.info(
        "training on %d clips (evaluating on %s), %d classes: %d epochs x %d steps of %d clips "
        "(%d per replica)",
        train_examples,
        eval_examples if eval_examples is not None else "all",
        len(class_names),
        options.epochs,
        steps_per_epoch,
        global_batch,
        options.batch_size,
    )
    with strategy.scope():
        model = build_model(options, len(class_names), steps_per_epoch)
        if initialize is not None:
            initialize(model.classifier)
    transform = transform_fn(tf_transform_output)
    train_data = strategy.distribute_datasets_from_function(
        lambda ctx: make_dataset(
            train_files,
            transform,
            options,
            len(class_names),
            ctx.get_per_replica_batch_size(global_batch),
            training=True,
            input_context=ctx,
        )
    )
    eval_data = make_dataset(
        eval_files, transform, options, len(class_names), global_batch, training=False
    )
    callbacks = [
        keras.callbacks.BackupAndRestore(
            os.path.join(run_dir, BACKUP_DIR),
            save_freq=options.checkpoint_every or "epoch",
            # Finished training needs no resume point: the export is the model (Swin-T's
            # backup, weights and both optimizers' moments, is ~3x the model).
            delete_checkpoint=True,
        ),
        keras.callbacks.TensorBoard(log_dir=run_dir, update_freq="epoch", write_graph=False),
        _EpochLog(options.epochs),
        *(callbacks or []),
    ]
    try:
        history = model.fit(
            train_data,
            epochs=options.epochs,
            steps_per_epoch=steps_per_epoch,
            validation_data=eval_data,
            callbacks=callbacks,
            verbose=0,
        )
    except tf.errors.InvalidArgumentError as error:
        bad_data = data_error(error, len(class_names))
        if bad_data is None:
            raise
        raise bad_data from None
    logs = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    return TrainResult(model, logs, class_names, steps_per_epoch, train_examples)


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (GenericExecutor): train, then export the serving model."""
    import tensorflow_transform as tft

    from model import export, warm_start

    options = TrainOptions.from_json(fn_args.custom_config[OPTIONS_KEY])
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    strategy = make_strategy(options.strategy, options.gpus)
    # The model being served (components/served_model.py); its folder is empty before the first
    # push, and then the pretrained checkpoint (or nothing) is the starting point.
    base_model = fn_args.base_model if export.holds_saved_model(fn_args.base_model) else None
    started_from = []

    def initialize(classifier):
        started_from.append(
            warm_start.initialize(classifier, base_model, options.pretrained or None)
        )

    result = train(
        options,
        fn_args.train_files,
        fn_args.eval_files,
        tf_transform_output,
        fn_args.model_run_dir,
        strategy,
        initialize,
    )
    chief = is_chief(strategy)
    if chief:
        with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, HISTORY_FILE), "w") as f:
            json.dump(result.history, f, indent=1)
        # On the Model artifact, beside Format-Serving/: how this model came to be.
        record = {
            "started_from": started_from[0],
            "options": dataclasses.asdict(options),
            "class_names": result.class_names,
            "train_examples": result.train_examples,
            "final_epoch": {k: v[-1] for k, v in result.history.items()},
        }
        model_dir = os.path.dirname(fn_args.serving_model_dir.rstrip("/"))
        with tf.io.gfile.GFile(os.path.join(model_dir, TRAINING_RECORD), "w") as f:
            json.dump(record, f, indent=1)
    # Every worker saves (collective ops need all of them); only the chief's copy is the model.
    export_dir = (
        fn_args.serving_model_dir
        if chief
        else os.path.join(
            fn_args.model_run_dir, f"worker-export-{strategy.cluster_resolver.task_id}"
        )
    )
    module = export.ServingModel(
        result.model.classifier,
        tf_transform_output.transform_features_layer(),
        result.class_names,
        options.clip_frames,
        options.image_size,
        options.serving_chunk,
        options.eval_views,
    )
    export.save(module, export_dir)
    logging.info("exported the serving model to %s", export_dir)
    if not chief:
        # TFX's GenericExecutor fails any replica whose serving_model_dir is missing; only the
        # chief's saved_model.pb in it is the model.
        tf.io.gfile.makedirs(fn_args.serving_model_dir)
