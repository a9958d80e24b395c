"""The Trainer: the model and its optimisers, `train()`, and TFX's `run_fn` (train, record, export).

    Trainer(run_fn="model.train.run_fn", custom_config={"options": TrainOptions(...).to_json()})

The input pipeline is model/inputs.py, the distribution strategy model/strategy.py, the settings
model/options.py, the served model model/export.py.

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
import time

import tensorflow as tf
import tf_keras as keras
from absl import logging

from data import counts, ingest_options
from model import clip as clip_lib
from model import versions
from model.inputs import count_examples, data_error, make_dataset, read_class_names, transform_fn
from model.options import (
    HISTORY_FILE,
    OPTIONS_KEY,
    SERVED_RECORD,
    SPANS_KEY,
    TRAINED_ON,
    TRAINING_RECORD,
    TrainOptions,
)
from model.strategy import is_chief, make_strategy
from model.video_swin import build_classifier

__all__ = ["OPTIONS_KEY", "TrainOptions", "run_fn", "train"]

BACKUP_DIR = "backup"  # BackupAndRestore's checkpoints, in the model run directory


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
    """Everything `train()` learned: the model, per-epoch metrics, and what it started from."""

    model: VideoClassifier
    history: dict[str, list[float]]
    class_names: list[str]
    steps_per_epoch: int
    train_examples: int
    started_from: str  # what `initialize` said it loaded ("random initialisation" without one)


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
    """Fits the model; `initialize(classifier)` sets starting weights (the warm start) and
    returns what it loaded, kept as TrainResult.started_from.

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
        started_from = (
            initialize(model.classifier) if initialize is not None else "random initialisation"
        )
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
    return TrainResult(model, logs, class_names, steps_per_epoch, train_examples, started_from)


def _ingest_options_json(train_files: list[str]) -> str:
    """How the training examples were made (recorded beside them by ingestion), for the served
    model's clients; "" when not recorded."""
    options = ingest_options.read(counts.examples_dir_of(train_files[0]))
    if options is None:
        logging.warning("no ingest settings beside %s: clients must be told them", train_files[0])
    return options.to_json() if options else ""


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (GenericExecutor): train on the run's window, then record how the
    model came to be and export the serving model."""
    import tensorflow_transform as tft

    from model import warm_start

    options = TrainOptions.from_json(fn_args.custom_config[OPTIONS_KEY])
    # The run's plan (components/spans.py TrainingPlan): the window of spans; None outside it.
    plan = fn_args.custom_config.get(SPANS_KEY)
    model_dir = os.path.dirname(fn_args.serving_model_dir.rstrip("/"))
    if plan and not plan["train"]:
        logging.info("No training in this run: %s.", plan["reason"])
        record = {"trained": False, "reason": plan["reason"], **_spans_record(plan)}
        _write_json(os.path.join(model_dir, TRAINING_RECORD), record)
        tf.io.gfile.makedirs(fn_args.serving_model_dir)  # TFX's executor checks it exists
        return
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    strategy = make_strategy(options.strategy, options.gpus)
    # The window: this run's examples and the earlier spans' raw examples where VideoExampleGen
    # stored them, all read through the Transform graph alike.
    earlier = [f"{uri}/Split-train/*" for uri in (plan or {}).get("examples", [])]
    train_files = _patterns(fn_args.train_files) + earlier
    if plan:
        logging.info(
            "Training window: spans %s (%d stored earlier)",
            ", ".join(map(str, plan["spans"])),
            len(earlier),
        )
    # The model being served (components/served_model.py); its folder is empty before the first
    # push, and then the pretrained checkpoint (or nothing) is the starting point.
    base_model = fn_args.base_model if versions.holds_saved_model(fn_args.base_model) else None
    result = train(
        options,
        train_files,
        fn_args.eval_files,
        tf_transform_output,
        fn_args.model_run_dir,
        strategy,
        lambda classifier: warm_start.initialize(
            classifier, base_model, options.pretrained or None
        ),
    )
    chief = is_chief(strategy)
    record = None
    if chief:
        record = write_training_record(result, options, plan, fn_args.model_run_dir, model_dir)
    # Every worker saves (collective ops need all of them); only the chief's copy is the model.
    export_dir = (
        fn_args.serving_model_dir
        if chief
        else os.path.join(
            fn_args.model_run_dir, f"worker-export-{strategy.cluster_resolver.task_id}"
        )
    )
    export_model(result, options, tf_transform_output, fn_args.train_files, export_dir, record)
    if not chief:
        # TFX's GenericExecutor fails any replica whose serving_model_dir is missing; only the
        # chief's saved_model.pb in it is the model.
        tf.io.gfile.makedirs(fn_args.serving_model_dir)


def write_training_record(
    result: TrainResult, options: TrainOptions, plan: dict | None, run_dir: str, model_dir: str
) -> dict:
    """history.json in the run directory (per-epoch metrics) and training.json on the Model
    artifact, beside Format-Serving/: how this model came to be. Returns the record."""
    _write_json(os.path.join(run_dir, HISTORY_FILE), result.history)
    record = {
        "trained": True,
        "started_from": result.started_from,
        "options": dataclasses.asdict(options),
        "class_names": result.class_names,
        "train_examples": result.train_examples,
        "final_epoch": {k: v[-1] for k, v in result.history.items()},
        **_spans_record(plan),
    }
    _write_json(os.path.join(model_dir, TRAINING_RECORD), record)
    return record


def export_model(
    result: TrainResult,
    options: TrainOptions,
    tf_transform_output,
    train_files,
    export_dir: str,
    record: dict | None,
) -> None:
    """The serving model (model/export.py) with the Transform graph, the class names and the
    ingest settings; with the chief's `record`, also the record the next run's TrainingPlan
    compares its window with (pushed with the model)."""
    from model import export

    module = export.ServingModel(
        result.model.classifier,
        tf_transform_output.transform_features_layer(),
        result.class_names,
        options.clip_frames,
        options.image_size,
        options.serving_chunk,
        options.eval_views,
        _ingest_options_json(train_files),
    )
    export.save(module, export_dir)
    if record is not None:
        _write_json(os.path.join(export_dir, SERVED_RECORD), record)
    logging.info("exported the serving model to %s", export_dir)


def _patterns(patterns) -> list[str]:
    return [patterns] if isinstance(patterns, str) else list(patterns)


def _spans_record(plan: dict | None) -> dict:
    """The spans a model was trained on, for its records (empty outside a span plan)."""
    if not plan:
        return {}
    return {"spans": plan["spans"], TRAINED_ON: plan["trained_on"]}


def _write_json(path: str, value: dict) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(value, f, indent=1)
