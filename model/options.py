"""The Trainer's settings as data: pipeline/configs.py sets them, `run_fn` reads them back.

No TensorFlow import here, so runners and configs load fast.
"""

from __future__ import annotations

import dataclasses

from data.options import JsonOptions, option

OPTIONS_KEY = "options"  # the Trainer's custom_config key
# The Trainer's custom_config key of the run's plan (components/spans.py TrainingPlan): the
# window of spans, the Examples of its earlier spans, whether to train.
SPANS_KEY = "spans"
TRAINED_ON = "trained_on"  # the record's [[span, fingerprint], ...] a model was trained on
# Inside an exported (and so a pushed) model: the record of how it was trained, which the next
# run's TrainingPlan compares with its window. TF Serving ignores assets.extra/ but its warm-up.
SERVED_RECORD = "assets.extra/training.json"
TRAINING_RECORD = "training.json"  # on the Model artifact, beside Format-Serving/
HISTORY_FILE = "history.json"  # per-epoch metrics, in the Trainer's model run directory


@dataclasses.dataclass(frozen=True)
class TrainOptions(JsonOptions):
    """Everything the Trainer is told; recorded in ML Metadata as the Trainer's custom_config.

    Defaults are Video Swin's recipe for real data (Swin-T, 32 frames at 224, AdamW lr 1e-3
    with backbone 0.1x, weight decay 0.05, 2.5 warm-up epochs then cosine, label smoothing).
    """

    variant: str = option("swin_t", "Video Swin variant (model/video_swin/config.py)")
    clip_frames: int = option(32, "T: frames per clip the model sees")
    sampled_frames: int = option(64, "L: the Transform's temporal cover, T of them per clip")
    image_size: int = option(224, "S: crop size")
    batch_size: int = option(8, "clips per replica; global batch = this x replicas")
    epochs: int = option(30, "passes over the training split")
    learning_rate: float = option(1e-3, "peak learning rate of the head")
    backbone_lr_multiplier: float = option(0.1, "backbone learning rate = this x the head's")
    weight_decay: float = option(
        0.05, "AdamW's decoupled weight decay (not on norms, biases tables)"
    )
    warmup_epochs: float = option(2.5, "linear warm-up, then cosine decay to 0")
    label_smoothing: float = option(0.1, "cross-entropy label smoothing")
    clip_norm: float = option(1.0, "global gradient-norm clipping per parameter group (0: off)")
    drop_path_rate: float = option(-1.0, "stochastic depth (-1: the variant's)")
    min_crop_area: float = option(0.08, "random resized crop: smallest area fraction")
    flip: bool = option(True, "random horizontal flips (off where a flip changes the label)")
    precision: str = option("float32", "float32 or mixed_bfloat16")
    recompute: bool = option(False, "recompute block activations in the backward pass")
    accumulation_steps: int = option(
        1, "gradient accumulation: micro-batches of batch_size/N per optimizer step"
    )
    jit_compile: bool = option(False, "XLA-compile the train step (slower on CPU)")
    strategy: str = option(
        "auto", "auto (TF_CONFIG -> multi-worker, else mirrored), mirrored, multi_worker"
    )
    gpus: int = option(0, "GPUs the Trainer must see, else it fails (0: uses what it finds)")
    shuffle_buffer: int = option(256, "examples (whole videos) in the shuffle buffer")
    checkpoint_every: int = option(0, "resume checkpoint every N steps (0: every epoch)")
    pretrained: str = option("", "official .pth or `python -m model.convert` directory")
    serving_chunk: int = option(8, "clips decoded and classified at a time when serving")
    eval_clips: int = option(
        4, "multi-view evaluation: clips per video, evenly spaced (at most L - T + 1 distinct)"
    )
    eval_crops: int = option(3, "multi-view evaluation: crops per clip, 1 (centre) or 3")
    seed: int = option(0, "random seed of initialisation, shuffling and augmentation")
    deterministic: bool = option(
        False, "the same seed gives the same model: training input in a fixed order (slower)"
    )

    def __post_init__(self):
        if self.clip_frames > self.sampled_frames:
            raise ValueError(
                f"clip_frames {self.clip_frames} > sampled_frames {self.sampled_frames}"
            )
        if self.accumulation_steps < 1 or self.batch_size % self.accumulation_steps:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of accumulation_steps "
                f"{self.accumulation_steps}"
            )
        if self.eval_crops not in (1, 3):
            raise ValueError(
                f"eval_crops must be 1 (centre) or 3 (ThreeCrop), got {self.eval_crops}"
            )
        if self.eval_clips < 1:
            raise ValueError(f"eval_clips must be at least 1, got {self.eval_clips}")
        if self.precision not in ("float32", "mixed_bfloat16"):
            raise ValueError(f"precision must be float32 or mixed_bfloat16, got {self.precision!r}")

    @property
    def eval_views(self) -> tuple[int, int]:
        """(clips, crops) of multi-view evaluation; (1, 1) is the single centre view."""
        return (self.eval_clips, self.eval_crops)

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        return (self.clip_frames, self.image_size, self.image_size, 3)
