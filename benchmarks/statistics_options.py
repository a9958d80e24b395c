"""What StatisticsGen should compute on video examples: time and memory of the choices.

    python -m benchmarks.statistics_options --examples <VideoExampleGen examples uri> [--schema S]

Runs the StatisticsGen executor itself (two Beam workers, as a local run) on real-size examples
(e.g. from benchmarks/pipeline_stages.py) once per variant, each in a fresh process whose tree's
peak memory (summed PSS, sampled every 0.5 s) and wall time are measured, and validates each
variant's statistics against the schema (the UCF101 one by default), as ExampleValidator would:

  count_batching   TFX's defaults: batches of up to 1000 examples, `frames` a categorical string
  byte_batching    batches closed at ~20 MiB (components/batching.py)
  frames_as_bytes  byte batching, `frames` declared image bytes (pipeline/statistics.py: the
                   pipeline's choice): its presence and counts, no top-k of JPEG strings
  frames_as_bytes_count_batching  the same with TFX's default batching
  without_frames   byte batching, `frames` not read at all (filtered reads)

Writes benchmarks/results/statistics_options.json.
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
from pathlib import Path

from benchmarks import results
from data.ingest_options import LOCAL_BEAM_ARGS
from model import keras_env

RESULTS = results.path("statistics_options")
REPO = Path(__file__).resolve().parents[1]
BEAM_ARGS = list(LOCAL_BEAM_ARGS)
VARIANTS = (
    "count_batching",
    "byte_batching",
    "frames_as_bytes_count_batching",
    "frames_as_bytes",
    "without_frames",
)


def stats_options(variant: str):
    import tensorflow_data_validation as tfdv

    from data import features as F
    from pipeline import statistics

    if variant.startswith("frames_as_bytes"):
        return statistics.stats_options()
    if variant == "without_frames":
        # TFX serializes StatsOptions to JSON, which cannot hold an allowlist of paths: the
        # features read are given as a schema instead (every feature but `frames`).
        from tensorflow_metadata.proto.v0 import schema_pb2

        schema = schema_pb2.Schema()
        for name in (F.LABEL, F.NUM_FRAMES, F.HEIGHT, F.WIDTH):
            schema.feature.add(name=name, type=schema_pb2.INT)
        for name in (F.LABEL_NAME, F.VIDEO_ID, F.GROUP):
            schema.feature.add(name=name, type=schema_pb2.BYTES)
        for name in (F.FPS, F.TIME_STEP):
            schema.feature.add(name=name, type=schema_pb2.FLOAT)
        return tfdv.StatsOptions(schema=schema, experimental_filter_read_paths=True)
    return tfdv.StatsOptions()


def child(variant: str, examples_uri: str, output: str) -> None:
    """One StatisticsGen execution (this process and its Beam workers are measured)."""
    from tfx.components.statistics_gen import executor as stock
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import artifact_utils, standard_artifacts

    from components import batching

    examples = standard_artifacts.Examples()
    examples.uri = examples_uri
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = output
    executor_class = (
        stock.Executor if variant == "count_batching" else batching.StatisticsGenExecutor
    )
    context = BaseBeamExecutor.Context(beam_pipeline_args=BEAM_ARGS, tmp_dir=output + "/.tmp")
    executor_class(context).Do(
        {"examples": [examples]},
        {"statistics": [statistics]},
        {"stats_options_json": stats_options(variant).to_json(), "exclude_splits": "[]"},
    )


def anomalies(output: str, schema_path: str) -> list[str]:
    import tensorflow_data_validation as tfdv
    from tfx.utils import io_utils

    schema = io_utils.SchemaReader().read(schema_path)
    found = []
    for split in ("train", "eval"):
        stats = tfdv.load_stats_binary(os.path.join(output, f"Split-{split}", "FeatureStats.pb"))
        result = tfdv.validate_statistics(stats, schema)
        found += [f"{split}/{name}" for name in result.anomaly_info]
    return found


def measure(variant: str, examples_uri: str, schema_path: str) -> dict:
    import psutil

    from benchmarks.pipeline_stages import _tree_memory

    output = tempfile.mkdtemp(prefix=f"stats-{variant}-")
    env = keras_env.child_env(PYTHONPATH=str(REPO))
    load = results.load_1min()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.statistics_options", "--child", variant,
         "--examples", examples_uri, "--output", output],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    tree, peak_pss, peak_rss = psutil.Process(proc.pid), 0.0, 0.0
    while proc.poll() is None:
        try:
            rss, pss = _tree_memory(tree)
        except psutil.NoSuchProcess:
            break
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.5)
    seconds = time.perf_counter() - start
    stderr = proc.stderr.read()
    if proc.returncode:
        raise RuntimeError(f"{variant} failed: {stderr[-3000:]}")
    try:
        found = anomalies(output, schema_path)
    finally:
        shutil.rmtree(output, ignore_errors=True)
    return {
        "seconds": round(seconds, 1),
        "peak_pss_mib": round(peak_pss),
        "peak_rss_mib": round(peak_rss),
        "anomalies": found,
        "load_1min": [load, results.load_1min()],
    }


def main(argv: list[str] | None = None) -> int:
    from pipeline import configs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", required=True, help="an Examples artifact's uri")
    parser.add_argument("--schema", default=configs.UCF101_SCHEMA)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.examples, args.output)
        return 0
    examples = sum(f.stat().st_size for f in Path(args.examples).glob("Split-*/*"))
    result = {"examples_uri": args.examples, "examples_bytes": examples, "beam_args": BEAM_ARGS}
    if args.results.exists():  # keep the variants not measured this time
        result = json.loads(args.results.read_text()) | result
    for variant in args.variants:
        result[variant] = measure(variant, args.examples, args.schema)
        print(variant, result[variant], flush=True)
    results.write("statistics_options", result, args.results)
    print(f"-> {args.results}")
    return 0


if __name__ == "__main__":
    from benchmarks import statistics_options  # Beam workers unpickle benchmarks.*

    sys.exit(statistics_options.main())
