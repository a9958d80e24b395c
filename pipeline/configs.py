"""Every pipeline setting in one place; runners and tests read them from here."""

from __future__ import annotations

import os

from data.ingest_options import LOCAL_BEAM_ARGS, IngestOptions
from data.spans import DEFAULT_PATTERN as DEFAULT_SPAN_PATTERN
from model.options import TrainOptions

PIPELINE_NAME = "video-swin-tfx"  # [a-z0-9][a-z0-9-]{0,127}: valid for Kubeflow too

# Local outputs (git-ignored).
OUTPUT_DIR = "outputs"
PIPELINE_ROOT = os.path.join(OUTPUT_DIR, "pipeline_root", PIPELINE_NAME)
METADATA_PATH = os.path.join(OUTPUT_DIR, "metadata", PIPELINE_NAME, "metadata.sqlite")

# Default data: the embedded synthetic set, generated here on first use (git-ignored).
GENERATED_DIR = "generated"
SYNTHETIC_DATA_ROOT = os.path.join(GENERATED_DIR, "synthetic")
SYNTHETIC_SEED = 0
UCF_SPLIT = 1  # UCF101's official split 1, 2 or 3

# Real data (UCF101, your videos): the data-layer defaults (data/ingest_options.py): every 2nd
# frame, at most 128, ~2.1 MB per 7 s 320x240 video; short_side=256 stores 256-px frames.
INGEST_OPTIONS = IngestOptions()
# The embedded set: every one of its 40 frames.
SYNTHETIC_INGEST_OPTIONS = IngestOptions(frame_stride=1, max_frames=64)

# Curated schemas, one per data set (label and label_name domains, frame constraints), imported
# with ImportSchemaGen. Without one (another data set), SchemaGen infers a schema: curate it and
# check it in as schema/<data set>/schema.pbtxt.
SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema")
SYNTHETIC_SCHEMA = os.path.join(SCHEMA_DIR, "synthetic", "schema.pbtxt")
# UCF101's (101 classes in classInd order, label range, frame bounds), used by default for a
# data root whose classInd.txt is the official one.
UCF101_SCHEMA = os.path.join(SCHEMA_DIR, "ucf101", "schema.pbtxt")
UCF101_CLASS_INDEX = os.path.join(SCHEMA_DIR, "ucf101", "classInd.txt")

# Beam for every Beam-based component: the local multi-process DirectRunner, as ingestion's.
BEAM_PIPELINE_ARGS = list(LOCAL_BEAM_ARGS)
# The embedded set is small: Beam in-process (no worker start-up, no worker log noise).
SYNTHETIC_BEAM_PIPELINE_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]

# Transform and Trainer: dotted paths (no module_file: nothing is pip-installed at run time).
PREPROCESSING_FN = "model.preprocessing.preprocessing_fn"
RUN_FN = "model.train.run_fn"
# Real data: Video Swin's recipe, Swin-T at 32x224 (model/options.py has every default), evaluated
# on 4 clips x 3 crops as Video Swin reports: its 32-frame clips are half the Transform's 64-frame
# cover of a video, so 4 clips (offsets 0, 10, 21, 32) see all of it twice; mmaction's 10 clips for
# UCF101 go with SlowOnly's 8-frame clips, which need more to cover a video.
TRAIN_OPTIONS = TrainOptions()
# The embedded set: a tiny Video Swin from scratch on 8 frames of 32x32, minutes on a CPU. No
# flips (ShiftLeft <-> ShiftRight) and mild crops (the square must stay in view). Measured eval
# top-1 after 15 epochs: 0.93 (seed 0) and 0.95 (seed 1); at lr 1e-3 a seed could stay near
# chance for 10 epochs.
SYNTHETIC_TRAIN_OPTIONS = TrainOptions(
    variant="tiny_w4",
    clip_frames=8,
    sampled_frames=16,
    image_size=32,
    batch_size=8,
    epochs=15,
    learning_rate=5e-4,
    label_smoothing=0.0,
    backbone_lr_multiplier=1.0,
    warmup_epochs=1.0,
    drop_path_rate=0.0,
    min_crop_area=0.6,
    flip=False,
    shuffle_buffer=512,
    deterministic=True,  # `make run` trains the same model on every machine of a kind
    # One view: the frames are square (three crops would be the same square) and `make run`
    # stays quick; --eval-views 3x1 averages 3 clips of the 16-frame cover.
    eval_clips=1,
    eval_crops=1,
)

# Arriving data (data/spans.py): span folders under the data root, e.g. span-0/, span-1/ or
# 2026-11-30/; a root without them is one span. A run trains on the last SPAN_WINDOW spans
# (0: all of them), and only when they differ from what the served model was trained on.
SPAN_PATTERN = DEFAULT_SPAN_PATTERN  # "span-{SPAN}"; dates: "{YYYY}-{MM}-{DD}"
SPAN_WINDOW = 0

# Evaluator: a model is blessed when its top-1 accuracy on the eval split (overall, not per
# class) reaches MIN_ACCURACY and does not fall below the last blessed model's.
MIN_ACCURACY = 0.5
SYNTHETIC_MIN_ACCURACY = 0.9

# Pusher: blessed models go to <SERVING_DIR>/<MODEL_NAME>/<version>/, TF Serving's layout.
SERVING_DIR = os.path.join(OUTPUT_DIR, "serving")
MODEL_NAME = "video_swin"

# Kubeflow Pipelines (kubeflow_runner.py): defaults for a run at UCF101 scale; every one is a flag.
# The image is built from this repo's Dockerfile (`--build-arg GPU=1` adds the CUDA wheels) and
# pushed to your registry. Roots are any file system TensorFlow and Beam both read (gs://).
KUBEFLOW_IMAGE = "ghcr.io/video-swin-tfx/video-swin-tfx:0.1.0-gpu"
KUBEFLOW_PIPELINE_ROOT = "gs://video-swin-tfx/pipeline-root"
KUBEFLOW_DATA_ROOT = "gs://video-swin-tfx/data/ucf101"
# The Trainer's pod: it alone asks for accelerators, so the Beam steps stay off GPU nodes.
# The type is the Kubernetes resource name on Kubeflow Pipelines; Vertex AI takes e.g. NVIDIA_L4.
KUBEFLOW_TRAINER_GPUS = 1
KUBEFLOW_GPU_TYPE = "nvidia.com/gpu"
KUBEFLOW_TRAINER_CPU = 8
KUBEFLOW_TRAINER_MEMORY = "32G"
# Disk for the launcher's copy of a step's input artifacts (and of outputs staged there before
# their upload), a volume per step that reads or writes examples (kubeflow_platform.py). UCF101's
# examples are 17-27 GB; the Transform's pod holds them and, staged, the transformed examples
# (64 of the ~90 stored frames per video: up to ~22 GB): ~50 GB at most, doubled for headroom.
KUBEFLOW_STEP_DISK = "100Gi"
# A TFJob Trainer (--workers > 1) fails, and its replicas are deleted, this long after it is
# created, Pending time included: fine-tuning Swin-T on UCF101 takes hours on a few GPUs.
KUBEFLOW_TFJOB_DEADLINE_HOURS = 24.0
# Training on several machines: a Vertex AI custom job (kubeflow_runner.py --vertex-project).
VERTEX_REGION = "us-central1"
VERTEX_MACHINE_TYPE = "g2-standard-12"  # 1 NVIDIA L4 per machine (--gpus 1 --gpu-type NVIDIA_L4)
