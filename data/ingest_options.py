"""How videos become examples: the ingest settings, without Beam or TensorFlow.

Ingestion (data/ingest.py, VideoExampleGen) records them as JSON; the serving client and the
exported model read them back, so a clip is decoded for serving as it was for training.
"""

from __future__ import annotations

import dataclasses
import posixpath

from data.options import JsonOptions, option

INGEST_OPTIONS_FILE = "ingest_options.json"  # beside the examples, as counts.json
# Beam's local runner, for ingestion and every Beam-based component of the pipeline: the
# DirectRunner in two processes (one per core of the machines this was measured on). On a
# cluster, pass e.g. --runner=DataflowRunner --project=... --region=... --temp_location=gs://...
LOCAL_BEAM_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")


@dataclasses.dataclass(frozen=True)
class IngestOptions(JsonOptions):
    """How videos become examples (data.video.decode_video does the sampling).

    Frames are sampled on each video's timeline, over the whole video: stored frame k is the
    frame showing at start + k * time_step, time_step = frame_stride / fps (fps: the container's
    average rate), so gaps and variable frame rates are filled by the frame on screen. A video
    with more than `max_frames` such grid points is stored as a uniform cover at 2x, 4x, ...
    that step (the smallest that fits); the example's `time_step` feature holds the step used.

    Real-data defaults: every 2nd frame (Video Swin's stride), at most 128 frames, i.e. all of
    a video up to 10.24 s at 25 fps at stride 2, longer ones at stride 4 (to 20.5 s), 8, ...
    UCF101 (13,320 videos, 320x240, 25 fps, 7.2 s on average, 27 h in all): a 7.2 s video gives
    90 frames, 2.1 MB at JPEG q90 (23.8 kB per frame, measured on camera-like texture; smoother
    real footage 15-20 kB); a 12 s one 75 frames at stride 4, 1.7 MB; never more than 128
    frames (~3 MB). The whole set: about 1.1 million frames, 17-27 GB (GZIP saves nothing on
    JPEG); jpeg_quality=75 takes a third off (1.4 MB for the 7.2 s video). The embedded set
    (40 frames of 64x64) uses frame_stride=1, max_frames=64: every frame, ~10 kB per example.

    Decoding cost is bounded: every packet is decoded once (no seeking), at most max_frames + 1
    decoded frames are held, and only the stored frames are converted to RGB and JPEG-encoded
    (about 0.1 s of CPU for the 7.2 s 320x240 video above).
    """

    frame_stride: int = option(2, "grid step in frames at the video's frame rate")
    max_frames: int | None = option(
        128, "frames per video at most: longer videos at 2x, 4x... the step (0 or None: all)"
    )
    short_side: int | None = option(None, "resize the shorter side to this (0 or None: keep)")
    jpeg_quality: int = option(90, "JPEG quality of the stored frames")
    max_bad_fraction: float = option(0.05, "fail when more of the listed videos are unusable")
    eval_fraction: float = option(0.3, "folder-per-class sets: share of groups hashed to eval")


def write(examples_dir: str, options: IngestOptions) -> None:
    """`<examples>/ingest_options.json`: the Trainer copies it into the served model."""
    import tensorflow as tf  # here: the serving client and Beam's workers never need it

    with tf.io.gfile.GFile(posixpath.join(examples_dir, INGEST_OPTIONS_FILE), "w") as f:
        f.write(options.to_json())


def read(examples_dir: str) -> IngestOptions | None:
    """The options the examples under `examples_dir` were made with; None when not recorded
    (examples made elsewhere)."""
    import tensorflow as tf

    path = posixpath.join(examples_dir, INGEST_OPTIONS_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return IngestOptions.from_json(f.read())
