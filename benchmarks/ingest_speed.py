"""Ingest throughput: Beam (DirectRunner, 2 worker processes) vs a plain single-process loop.

Both do the same work per video: PyAV decode of every frame, JPEG encode, tf.Example
serialisation and a GZIP TFRecord write. Beam's time includes its start-up (worker processes,
TensorFlow import in each), so the videos are UCF101-sized (320x240, ~4 s) and numerous enough
to amortise it. Writes benchmarks/results/ingest_speed.json and prints a table.

    python -m benchmarks.ingest_speed [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import tensorflow as tf

from data import ingest, synthetic, ucf101, video

RESULTS = Path(__file__).resolve().parent / "results" / "ingest_speed.json"
DATA_DIR = Path(__file__).resolve().parents[1] / "generated" / "bench_ingest"
BEAM_ARGS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
OPTIONS = ingest.IngestOptions(max_frames=None, jpeg_quality=90)  # every frame: a UCF-like load
SIZES = {
    # UCF101-like clips: 320x240, 100 frames at 25 fps.
    "full": synthetic.SyntheticSpec(
        classes=("ShiftLeft", "ShiftRight", "PulseSlow", "PulseFast"),
        groups=3,
        clips_per_group=5,
        num_frames=100,
        height=240,
        width=320,
    ),
    "quick": synthetic.SyntheticSpec(
        classes=("ShiftLeft", "PulseFast"), groups=3, clips_per_group=1, num_frames=24
    ),
}


def plain_loop(records, output: str) -> float:
    """The baseline: one process, one video after another; returns seconds."""
    start = time.perf_counter()
    with tf.io.TFRecordWriter(output, options="GZIP") as writer:
        for record in records:
            clip = video.decode_video(
                record.path, OPTIONS.frame_stride, OPTIONS.max_frames, OPTIONS.short_side
            )
            writer.write(ingest.to_example(record, clip, OPTIONS.jpeg_quality))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few small videos: a smoke run")
    args = parser.parse_args(argv)
    size = "quick" if args.quick else "full"
    spec = SIZES[size]
    data_root = DATA_DIR / size
    fingerprint = hashlib.sha256(json.dumps(dataclasses.asdict(spec)).encode()).hexdigest()
    marker = data_root / f"spec-{fingerprint[:12]}"  # regenerate only when the spec changes
    if not marker.exists():
        synthetic.generate(data_root, seed=0, spec=spec)
        marker.touch()
    records = ucf101.list_videos(str(data_root)).records
    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    try:
        loop_s = plain_loop(records, str(work / "loop.tfrecord.gz"))
        start = time.perf_counter()
        summary = ingest.run(str(data_root), str(work / "beam"), 1, OPTIONS, BEAM_ARGS)
        beam_s = time.perf_counter() - start
        beam_bytes = sum(f.stat().st_size for f in (work / "beam").glob("Split-*/*.gz"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    videos, frames = len(records), summary.metrics["frames"]
    assert summary.metrics["videos_good"] == videos, summary
    result = {
        "size": size,
        "videos": videos,
        "frames": frames,
        "video": f"{spec.width}x{spec.height}, {spec.num_frames} frames, mpeg4/avi",
        "options": dataclasses.asdict(OPTIONS),
        "single_process_loop": _rates(loop_s, videos, frames),
        "beam_2_workers": _rates(beam_s, videos, frames) | {"beam_args": BEAM_ARGS},
        "speedup": round(loop_s / beam_s, 2),
        "output_bytes_per_video_gzip": round(beam_bytes / videos),
        "cpu_count": os.cpu_count(),
        "load_average_1min_after": round(os.getloadavg()[0], 2),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'':28}{'seconds':>9}{'videos/s':>10}{'frames/s':>10}")
    for name in ("single_process_loop", "beam_2_workers"):
        r = result[name]
        print(f"{name:28}{r['seconds']:9.1f}{r['videos_per_s']:10.2f}{r['frames_per_s']:10.1f}")
    print(
        f"speedup {result['speedup']}x over {videos} videos ({result['video']}); "
        f"{result['output_bytes_per_video_gzip'] / 1e3:.0f} kB per video (GZIP TFRecord). "
        f"-> {RESULTS}"
    )
    return 0


def _rates(seconds: float, videos: int, frames: int) -> dict:
    return {
        "seconds": round(seconds, 2),
        "videos_per_s": round(videos / seconds, 2),
        "frames_per_s": round(frames / seconds, 1),
    }


if __name__ == "__main__":
    from benchmarks import ingest_speed  # Beam workers unpickle benchmarks.*, not __main__.*

    sys.exit(ingest_speed.main())
