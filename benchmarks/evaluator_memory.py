"""The Evaluator's peak memory at the real clip size: TFMA over raw examples, Swin-T 32x224.

    python -m benchmarks.evaluator_memory [--quick] [--examples 36] [--chunks 8,1]

TFMA may batch up to 1000 examples into one call of `serving_default`, and a decoded 32x224x224
clip is 19 MB as float32, far more in Swin-T's activations: model/export.py classifies in chunks
of `chunk_size` clips to bound that. This measures it. A `prepare` child writes N raw examples
in the ingest format (90 JPEG frames of 320x240 camera-like texture each, GZIP TFRecords),
analyses a real Transform graph with tf.Transform (model.preprocessing, sampled_frames = 2T),
builds Swin-T with random weights and exports one ServingModel per chunk size. Then one fresh
`eval` child per chunk size (peak RSS never goes down, so processes are not shared) runs
tfma.run_model_analysis with pipeline.evaluation.eval_config(0.0) over the raw examples and
reports its RSS after imports and its peak RSS (VmHWM) over the whole run: Beam, the model load,
every serving batch and the metrics. Writes benchmarks/results/evaluator_memory.json.
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
from benchmarks.train_memory import status_mib
from model import keras_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = 4
VIDEO_FRAMES = 90  # stored frames per raw example (a ~4 s UCF101 clip at 25 fps)
SIZES = {"full": (32, 224), "quick": (16, 112)}


def _memory_limit_mib() -> float:
    """The cgroup's memory limit if it has one, else the machine's physical memory."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            value = f.read().strip()
        if value != "max":
            return int(value) / 2**20
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


def _class_name(i: int) -> str:
    return f"Class{i % CLASSES}"


def write_examples(path: str, examples: int, frames: int) -> float:
    """GZIP TFRecords of raw ingest-format examples -> mean serialized size in MB."""
    import numpy as np
    import tensorflow as tf

    from benchmarks.ingest_speed import textured_clip
    from data import example_proto, video
    from data import features as F

    total = 0
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(examples):
            # Four different videos, reused: content changes JPEG cost, not the memory measured.
            pixels = textured_clip(np.random.default_rng(i % 4), frames, 240, 320)
            record = example_proto.make_example(
                {
                    F.FRAMES: [video.encode_jpeg(f) for f in pixels],
                    F.LABEL: [i % CLASSES],
                    F.LABEL_NAME: [_class_name(i).encode()],
                    F.VIDEO_ID: [f"v_{_class_name(i)}_g01_c{i:02d}".encode()],
                }
            )
            total += len(record)
            writer.write(record)
    return total / examples / 1e6


def analyze_transform(output_dir: str, temp_dir: str, sampled_frames: int) -> None:
    """A real transform_fn of model.preprocessing (the vocabulary over the examples' classes).

    Only the analyzer's input (labels and names) matters to the graph, so it is analysed over
    one-frame stand-ins of the examples rather than reading ~100 MB of JPEGs through Beam.
    """
    import functools

    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata

    from data import features as F
    from model import preprocessing

    spec = {
        F.FRAMES: tf.io.VarLenFeature(tf.string),
        F.LABEL: tf.io.FixedLenFeature([1], tf.int64),
        F.LABEL_NAME: tf.io.FixedLenFeature([1], tf.string),
        F.VIDEO_ID: tf.io.FixedLenFeature([1], tf.string),
    }
    rows = [
        {
            F.FRAMES: [b"stand-in"],
            F.LABEL: [i],
            F.LABEL_NAME: [_class_name(i).encode()],
            F.VIDEO_ID: [f"v{i}".encode()],
        }
        for i in range(CLASSES)
    ]
    fn = functools.partial(
        preprocessing.preprocessing_fn,
        custom_config={preprocessing.SAMPLED_FRAMES_KEY: sampled_frames},
    )
    metadata = dataset_metadata.DatasetMetadata.from_feature_spec(spec)
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=temp_dir):
        transform_fn = (pipeline | beam.Create(rows), metadata) | tft_beam.AnalyzeDataset(fn)
        _ = transform_fn | tft_beam.WriteTransformFn(output_dir)


def prepare(work: str, examples: int, frames: int, size: int, chunks: list[int]) -> dict:
    """Examples, the Transform graph and one exported ServingModel per chunk size, in work."""
    keras_env.use_tf_keras()
    import tensorflow as tf
    import tensorflow_transform as tft

    from model import export, preprocessing
    from model.video_swin import build_classifier

    start = time.perf_counter()
    mb = write_examples(os.path.join(work, "eval.tfrecord.gz"), examples, VIDEO_FRAMES)
    written = time.perf_counter()
    transform_dir = os.path.join(work, "transform")
    analyze_transform(transform_dir, os.path.join(work, "tft_tmp"), 2 * frames)
    tft_output = tft.TFTransformOutput(transform_dir)
    keys = tft_output.vocabulary_by_name(preprocessing.CLASSES_VOCABULARY)
    pairs = sorted(preprocessing.parse_class_key(k.decode()) for k in keys)
    class_names = [name for _, name in pairs]
    tf.keras.utils.set_random_seed(0)
    classifier = build_classifier("swin_t", len(class_names), (frames, size, size, 3))
    analysed = time.perf_counter()
    for chunk in chunks:
        module = export.ServingModel(
            classifier, tft_output.transform_features_layer(), class_names, frames, size, chunk
        )
        export.save(module, os.path.join(work, f"model_chunk{chunk}"))
    return {
        "example_mb": round(mb, 2),
        "write_examples_s": round(written - start, 1),
        "export_s": round(time.perf_counter() - analysed, 1),
        "classes": class_names,
    }


def _record_batches(batches: dict[str, list[int]]) -> None:
    """Notes the size of every batch each TFMA model DoFn gets (the DirectRunner runs in this
    process). A batch that fails in the model is retried one example at a time: size-1 entries."""
    from tensorflow_model_analysis.utils import model_util, util

    process = model_util.BatchReducibleBatchedDoFnWithModels.process

    def recorded(self, element):
        # Keyed by the extract written: "predictions" calls serving_default; the
        # "transformed_features" DoFn finds no such signature here and calls nothing.
        key = "/".join(getattr(self, "_output_keypath", [type(self).__name__]))
        batches.setdefault(key, []).append(util.batch_size(element))
        return process(self, element)

    model_util.BatchReducibleBatchedDoFnWithModels.process = recorded


def evaluate(work: str, chunk: int, batch: int) -> dict:
    """TFMA as the Evaluator runs it; batch 0: tfx_bsl's adaptive batches (1 up to 1000), else
    every batch exactly `batch` examples (what a large eval split reaches)."""
    keras_env.use_tf_keras()
    import apache_beam as beam
    import tensorflow_model_analysis as tfma
    from tfx_bsl.public.tfxio import TFExampleRecord

    from pipeline import evaluation

    rss_imports = status_mib("VmRSS")
    batches: dict[str, list[int]] = {}
    _record_batches(batches)
    # As the TFX Evaluator does on a first run (no baseline): change thresholds are dropped.
    config = tfma.utils.update_eval_config_with_defaults(
        evaluation.eval_config(0.0), has_baseline=False, rubber_stamp=True
    )
    shared = tfma.default_eval_shared_model(
        eval_saved_model_path=os.path.join(work, f"model_chunk{chunk}"), eval_config=config
    )
    output = os.path.join(work, f"eval_chunk{chunk}_batch{batch}")
    start = time.perf_counter()
    # tfma.run_model_analysis's own pipeline, with the batch size exposed.
    tfxio = TFExampleRecord(
        file_pattern=os.path.join(work, "eval.tfrecord.gz"),
        raw_record_column_name=tfma.ARROW_INPUT_COLUMN,
    )
    with beam.Pipeline() as pipeline:
        _ = (
            pipeline
            | tfxio.BeamSource(batch_size=batch or None)
            | tfma.ExtractEvaluateAndWriteResults(
                eval_shared_model=shared, eval_config=config, output_path=output
            )
        )
    wall = time.perf_counter() - start
    peak = status_mib("VmHWM")
    result = tfma.load_eval_result(output)
    overall = next(m for key, m in result.slicing_metrics if key == ())
    count = next(v for k, v in overall[""][""].items() if k.startswith("example_count"))
    return {
        "chunk_size": chunk,
        "batch": batch or "adaptive",
        "rss_after_imports_mib": round(rss_imports, 1),
        "peak_rss_mib": round(peak, 1),
        "wall_s": round(wall, 1),
        "examples_evaluated": int(count["doubleValue"]),
        "model_batches": batches,
        "load_1min": results.load_1min(),
    }


def _run_child(args: list[str]) -> dict:
    env = keras_env.child_env(PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "-m", "benchmarks.evaluator_memory", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 examples, 16x112 clips")
    parser.add_argument("--examples", type=int, default=36)
    parser.add_argument(
        "--runs",
        default="8:adaptive,8:all,1:all",
        help="chunk_size:batch per eval child; batch: adaptive (tfx_bsl's), all (one batch of "
        "every example) or a number",
    )
    parser.add_argument("--output", default=str(results.path("evaluator_memory")))
    parser.add_argument("--child", choices=["prepare", "eval"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    examples = 8 if args.quick else args.examples
    configs = []
    for item in args.runs.split(","):
        chunk, batch = item.split(":")
        batch = (
            {"adaptive": 0, "all": examples}.get(batch)
            if batch in ("adaptive", "all")
            else int(batch)
        )
        configs.append((int(chunk), batch))
    chunks = sorted({c for c, _ in configs})
    if args.child == "prepare":
        frames, size = (int(v) for v in args.clip.split("x"))
        print(json.dumps(prepare(args.work, examples, frames, size, chunks)))
        return 0
    if args.child == "eval":
        print(json.dumps(evaluate(args.work, *configs[0])))
        return 0
    frames, size = SIZES["quick" if args.quick else "full"]
    work = tempfile.mkdtemp(prefix="evaluator_memory_")
    try:
        common = ["--work", work, "--examples", str(examples)]
        quick = ["--quick"] if args.quick else []
        everything = ",".join(f"{c}:{b}" for c, b in configs)
        prepared = _run_child(
            [
                "--child",
                "prepare",
                *common,
                *quick,
                "--clip",
                f"{frames}x{size}",
                "--runs",
                everything,
            ]
        )
        runs = [
            _run_child(["--child", "eval", *common, *quick, "--runs", f"{c}:{b}"])
            for c, b in configs
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        "model": f"swin_t, {CLASSES} classes, random weights, ServingModel serving_default",
        "clip": [frames, size, size, 3],
        "sampled_frames": 2 * frames,
        "examples": examples,
        "raw_example": f"{VIDEO_FRAMES} JPEG frames of 320x240, {prepared['example_mb']} MB",
        "quick": args.quick,
        "memory_limit_mib": round(_memory_limit_mib()),
        "method": "one fresh process per configuration: TFMA's run_model_analysis pipeline "
        "(DirectRunner, in process; TFExampleRecord source -> ExtractEvaluateAndWriteResults) "
        "with pipeline.evaluation.eval_config(0.0) as a first-run Evaluator uses it, over GZIP "
        "TFRecords of raw examples; peak RSS = VmHWM of that process over imports, model load, "
        "inference and metrics; model_batches = examples per model call, per TFMA DoFn",
        "export_s": prepared["export_s"],
        "runs": runs,
    }
    results.write("evaluator_memory", summary, args.output)
    print(
        f"Evaluator (TFMA) on {examples} raw examples, swin_t {frames}x{size}: peak RSS "
        f"(limit {summary['memory_limit_mib'] / 1024:.0f} GiB)"
    )
    for r in runs:
        print(
            f"  chunk_size {r['chunk_size']:>3}, batch {r['batch']:>8}: {r['peak_rss_mib']:>7.0f} "
            f"MiB peak ({r['rss_after_imports_mib']:.0f} after imports), "
            f"{r['examples_evaluated']} examples in {r['wall_s']:.0f} s (load {r['load_1min']})"
        )
        print(f"      model batches: {r['model_batches']}")
    print(f"  -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
