"""The Swin-T training steps the model benchmarks measure, in TensorFlow and in PyTorch.

Two configurations (`CONFIGS`); `DEFAULT_CONFIG` is the one place to switch what `make bench`
times:
- "trainer": the Trainer's default configuration, built by `model.train.build_model` from
  `TrainOptions()` (two AdamW groups, backbone 0.1x, linear warm-up + cosine decay, label
  smoothing 0.1, global-norm clipping per group, stochastic depth 0.1, MirroredStrategy over the
  local devices), stepped by Keras' own compiled train function. PyTorch gets the same recipe.
- "adamw": a bare AdamW step (cross-entropy, one optimizer, no clipping) in a tf.function.
"""

from __future__ import annotations

from typing import Any, NamedTuple

CONFIGS = ("trainer", "adamw")
DEFAULT_CONFIG = "trainer"
STEPS_PER_EPOCH = 100  # the schedule's length only matters for the learning-rate values


class TrainingSetup(NamedTuple):
    """model: [N,T,H,W,3] -> logits; step(clips, labels) -> loss, undecorated (callers choose
    tf.function / jit_compile)."""

    model: Any
    clips: Any
    labels: Any
    step: Any


def swin_t_training(
    shape: tuple[int, ...], num_classes: int, recompute: bool = False
) -> TrainingSetup:
    """Swin-T with random weights, random clips of `shape` (N,T,H,W,3), AdamW slots built."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from model.video_swin import build_classifier

    model = build_classifier("swin_t", num_classes, shape[1:], recompute=recompute)
    optimizer = keras.optimizers.AdamW(1e-4, weight_decay=0.05)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    clips = tf.constant(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    labels = tf.constant([1] * shape[0])

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
        return loss

    return TrainingSetup(model, clips, labels, step)


def tf_train_step(config: str, shape: tuple[int, ...], num_classes: int, recompute: bool = False):
    """A compiled TF training step for `config`: a no-argument callable returning the loss.

    recompute: the blocks' activations are recomputed in the backward pass (TrainOptions)."""
    import numpy as np
    import tensorflow as tf

    if config == "adamw":
        _, clips, labels, step = swin_t_training(shape, num_classes, recompute=recompute)
        compiled = tf.function(step)
        return lambda: float(compiled(clips, labels))
    if config != "trainer":
        raise ValueError(f"unknown training configuration {config!r}; one of {CONFIGS}")
    from model.train import TrainOptions, build_model, make_strategy

    options = TrainOptions(
        clip_frames=shape[1],
        sampled_frames=max(shape[1], 2),
        image_size=shape[2],
        recompute=recompute,
    )
    if shape[2] != shape[3]:
        raise ValueError(f"the Trainer crops square clips; got {shape}")
    strategy = make_strategy(options.strategy)
    with strategy.scope():
        model = build_model(options, num_classes, STEPS_PER_EPOCH)
    rng = np.random.default_rng(0)
    clips = tf.constant(rng.integers(0, 256, shape, dtype=np.uint8))  # the Trainer feeds uint8
    labels = tf.one_hot([1] * shape[0], num_classes)
    # As fit() does: Keras' compiled train function on one distributed iterator that lives on.
    # (train_on_batch builds an iterator per call: 0.50-0.70 s a step against 0.41 s at
    # 1x8x112x112, interleaved in one process.)
    batches = tf.data.Dataset.from_tensors((clips, labels)).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(batches))
    train_function = model.make_train_function()
    return lambda: float(train_function(iterator)["loss"])


def torch_train_step(config: str, model, clips):
    """The PyTorch counterpart of `tf_train_step` for a torchvision swin3d_t: a callable."""
    import math

    import torch

    labels = torch.ones(clips.shape[0], dtype=torch.long)
    if config == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)

        def adamw_step():
            model.train()
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(clips), labels)
            loss.backward()
            optimizer.step()
            return loss.item()

        return adamw_step
    if config != "trainer":
        raise ValueError(f"unknown training configuration {config!r}; one of {CONFIGS}")
    from model.options import TrainOptions  # no TensorFlow import: this process is torch's

    options = TrainOptions()
    frames = torch.randint(0, 256, clips.shape, dtype=torch.uint8)  # uint8, as the Trainer's
    # ImageNet mean/std in 0..255: model/clip.py's constants (importing it would load TF here).
    mean = torch.tensor([0.485, 0.456, 0.406]).mul(255).view(1, 3, 1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).mul(255).view(1, 3, 1, 1, 1)
    groups = {"backbone": [], "head": []}
    for name, param in model.named_parameters():
        groups["head" if name.startswith("head.") else "backbone"].append((name, param))

    def optimizer(named, lr):
        no_decay = ("norm", "relative_position_bias_table", "bias")
        decay = [p for n, p in named if not any(k in n for k in no_decay)]
        rest = [p for n, p in named if any(k in n for k in no_decay)]
        params = [{"params": decay}, {"params": rest, "weight_decay": 0.0}]
        return torch.optim.AdamW(params, lr=lr, weight_decay=options.weight_decay)

    peak = options.learning_rate
    optimizers = [
        optimizer(groups["backbone"], peak * options.backbone_lr_multiplier),
        optimizer(groups["head"], peak),
    ]
    total = options.epochs * STEPS_PER_EPOCH
    warmup = int(round(options.warmup_epochs * STEPS_PER_EPOCH))

    def factor(step):
        if step < warmup:
            return step / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup)))

    schedules = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in optimizers]

    def trainer_step():
        model.train()
        for o in optimizers:
            o.zero_grad()
        logits = model((frames.float() - mean) / std)
        loss = torch.nn.functional.cross_entropy(
            logits, labels, label_smoothing=options.label_smoothing
        )
        loss.backward()
        for group in groups.values():
            torch.nn.utils.clip_grad_norm_([p for _, p in group], options.clip_norm)
        for o, s in zip(optimizers, schedules, strict=True):
            o.step()
            s.step()
        return loss.item()

    return trainer_step
