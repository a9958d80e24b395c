"""The Trainer's export (model/export.py save) and what multi-view evaluation costs per video.

    python -m benchmarks.export_speed [--quick]

One fresh process per clip size, as the Trainer ends: a tiny Video Swin (tiny_w4, random
weights) already called once, a real Transform graph (model.preprocessing analysed by
tf.Transform), then export.save with serving_default, serving_views (4 clips x 3 crops) and
serving_frames; wall and CPU seconds. Then the saved model is loaded and both example signatures
classify raw examples in the ingest format (90 JPEG frames of 320x240 camera-like texture, as a
7 s UCF101 video): seconds per video for one view and for the 12 views (4 clips x 3 crops, plus
the centre view TFMA reports beside them: 4 clips do not include it). Writes
benchmarks/results/export_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks import results
from model import keras_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (T, S, L): the embedded set's clip and the real-size tiny run's (--clip-frames 8
# --image-size 112, sampled_frames 64).
SIZES = {"embedded": (8, 32, 16), "real_size_tiny": (8, 112, 64)}
VIEWS = (4, 3)
VIDEOS = 8


def measure(work: str, frames: int, size: int, sampled: int, videos: int) -> dict:
    keras_env.use_tf_keras()
    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft

    from benchmarks.evaluator_memory import VIDEO_FRAMES, analyze_transform, write_examples
    from model import export, train
    from model.inputs import read_class_names
    from model.video_swin import build_classifier

    analyze_transform(os.path.join(work, "transform"), os.path.join(work, "tmp"), sampled)
    tft_output = tft.TFTransformOutput(os.path.join(work, "transform"))
    class_names = read_class_names(tft_output)
    tf.keras.utils.set_random_seed(0)
    classifier = build_classifier("tiny_w4", len(class_names), (frames, size, size, 3))
    model = train.VideoClassifier(classifier)
    model(np.zeros((1, frames, size, size, 3), np.uint8))  # as after training: built, called
    module = export.ServingModel(
        classifier,
        tft_output.transform_features_layer(),
        class_names,
        frames,
        size,
        views=VIEWS,
    )
    load = results.load_1min()
    wall, cpu = time.perf_counter(), time.process_time()
    export.save(module, os.path.join(work, "model"))
    export_wall, export_cpu = time.perf_counter() - wall, time.process_time() - cpu

    write_examples(os.path.join(work, "eval.tfrecord.gz"), videos, VIDEO_FRAMES)
    records = tf.data.TFRecordDataset(os.path.join(work, "eval.tfrecord.gz"), "GZIP")
    examples = tf.constant(list(records.as_numpy_iterator()))
    loaded = tf.saved_model.load(os.path.join(work, "model"))
    per_video = {}
    for name in ("serving_default", export.VIEWS_SIGNATURE):
        signature = loaded.signatures[name]
        signature(examples=examples[:1])  # warm-up
        wall, cpu = time.perf_counter(), time.process_time()
        signature(examples=examples)
        per_video[name] = {
            "wall_s": round((time.perf_counter() - wall) / videos, 3),
            "cpu_s": round((time.process_time() - cpu) / videos, 3),
        }
    return {
        "clip": [frames, size, size, 3],
        "sampled_frames": sampled,
        "export_wall_s": round(export_wall, 1),
        "export_cpu_s": round(export_cpu, 1),
        "per_video": per_video,
        "load_1min": [load, results.load_1min()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the embedded size only, 2 videos")
    parser.add_argument("--output", default=str(results.path("export_speed")))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    videos = 2 if args.quick else VIDEOS
    if args.child:
        work = tempfile.mkdtemp(prefix="export_speed_")
        try:
            print(json.dumps(measure(work, *SIZES[args.child], videos)), flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        # A process that ran a tf.Transform analysis in Beam crashes in its final garbage
        # collection (SIGSEGV at exit, measured with this lock); the results are out by now.
        os._exit(0)
    env = keras_env.child_env(PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    runs = {}
    for name in ["embedded"] if args.quick else list(SIZES):
        command = [sys.executable, "-m", "benchmarks.export_speed", "--child", name]
        command += ["--quick"] if args.quick else []
        proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        runs[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    summary = {
        "model": "tiny_w4, random weights, 4 classes; export.save with serving_default, "
        f"serving_views ({VIEWS[0]}x{VIEWS[1]}) and serving_frames",
        "videos": f"{videos} raw examples of 90 JPEG frames of 320x240",
        "method": "one fresh process per size; wall and CPU seconds of export.save, then of one "
        "call of each example signature over all videos (after a one-video warm-up)",
        "runs": runs,
    }
    results.write("export_speed", summary, args.output)
    for name, r in runs.items():
        one, views = r["per_video"]["serving_default"], r["per_video"]["serving_views"]
        print(
            f"{name} {'x'.join(map(str, r['clip'][:3]))}: export {r['export_wall_s']} s "
            f"({r['export_cpu_s']} CPU s); per video: one view {one['wall_s']} s, "
            f"{VIEWS[0]}x{VIEWS[1]} views {views['wall_s']} s (load {r['load_1min']})"
        )
    print(f"  -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
