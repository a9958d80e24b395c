"""The Trainer's input pipeline: clips decoded and augmented per second, against the model's steps.

    python -m benchmarks.input_speed [--quick] [--clips 64] [--frames 32] [--size 224]

Builds transformed examples as the Transform writes them (L = 2T JPEG strings of 320x240
camera-like frames, UCF101's size) and times model/inputs.py's make_dataset: training mode
(random offset, random resized crop decoded with decode_and_crop_jpeg, flip, resize to S, uint8)
and evaluation mode (centre clip and crop). The model never waits on data when clips/s exceeds
the training step's clips/s (benchmarks/results/model_speed.json, if present, is read for it).
Writes benchmarks/results/input_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from benchmarks import results
from benchmarks.ingest_speed import textured_clip


def write_examples(path: str, clips: int, frames: int, seed: int = 0) -> None:
    import tensorflow as tf

    from data import features as F
    from data import video
    from model import preprocessing

    rng = np.random.default_rng(seed)
    pixels = textured_clip(rng, frames, 240, 320)  # one video's frames, reused for every clip
    jpegs = [video.encode_jpeg(f) for f in pixels]
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(clips):
            example = tf.train.Example()
            f = example.features.feature
            f[preprocessing.SAMPLED_FRAMES].bytes_list.value.extend(jpegs)
            f[F.LABEL].int64_list.value.append(i % 10)
            f[F.VIDEO_ID].bytes_list.value.append(f"v_{i}".encode())
            writer.write(example.SerializeToString())


def measure(pattern: str, options, training: bool, batches: int) -> dict:
    import tensorflow as tf

    from model import preprocessing
    from model.inputs import make_dataset

    spec = {
        preprocessing.SAMPLED_FRAMES: tf.io.FixedLenFeature([options.sampled_frames], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "video_id": tf.io.FixedLenFeature([], tf.string),
    }
    # Examples in the Transform's output form: this measures decoding and cropping, not the
    # Transform graph the Trainer runs first (a gather of JPEG strings).
    dataset = make_dataset(
        pattern,
        lambda record: tf.io.parse_single_example(record, spec),
        options,
        10,
        options.batch_size,
        training,
    )
    if not training:
        dataset = dataset.repeat()
    iterator = iter(dataset)
    next(iterator)  # tracing, thread pools
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        clips, _ = next(iterator)
    wall = time.perf_counter() - start
    n = batches * options.batch_size
    assert clips.dtype == tf.uint8
    return {
        "mode": "train" if training else "eval",
        "clips": n,
        "wall_s": round(wall, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
        "clips_per_s": round(n / wall, 2),
        "load_1min": results.load_1min(),
    }


def main(argv: list[str] | None = None) -> int:
    import dataclasses
    import tempfile

    from model.options import TrainOptions

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 frames at 112: a smoke run")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args(argv)
    frames, size = (8, 112) if args.quick else (args.frames, args.size)
    options = dataclasses.replace(
        TrainOptions(), clip_frames=frames, sampled_frames=2 * frames, image_size=size
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "examples.tfrecord.gz")
        write_examples(path, clips=4 * options.batch_size, frames=options.sampled_frames)
        runs = [measure(path, options, training, args.batches) for training in (True, False)]
    result = {"clip": [frames, size, size, 3], "batch_size": options.batch_size, "runs": runs}
    model_results = results.path("model_speed")
    if model_results.exists():
        with open(model_results) as f:
            model = json.load(f)
        step = model.get("summary", {}).get("train_step", {}).get("tf_median_s")
        if step:
            result["model_train_clips_per_s"] = round(model["shape"][0] / step, 3)
    for run in runs:
        print(
            f"input pipeline ({run['mode']}): {run['clips_per_s']} clips/s of "
            f"{frames}x{size}x{size} ({run['cpu_s']} CPU s over {run['wall_s']} s, "
            f"load {run['load_1min']})"
        )
    if "model_train_clips_per_s" in result:
        print(f"model training step: {result['model_train_clips_per_s']} clips/s")
    results.write("input_speed", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
