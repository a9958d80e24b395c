"""Ingest throughput: Beam (DirectRunner, 2 worker processes) vs a plain single-process loop.

Both do the same work per video: PyAV decode of every frame, JPEG encode, tf.Example
serialisation and a GZIP TFRecord write. Beam's time includes its start-up (worker processes;
they import no TensorFlow), so the videos are UCF101-sized (320x240, 12 s) and numerous enough
to amortise it. Beside it, the size of an example under the real-data IngestOptions defaults
(a uniform cover of the whole video, at most max_frames). Writes
benchmarks/results/ingest_speed.json and prints a table.

    python -m benchmarks.ingest_speed [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from benchmarks import results
from data import ingest, ingest_options, synthetic, video, video_sets

RESULTS = results.path("ingest_speed")
DATA_DIR = Path(__file__).resolve().parents[1] / "generated" / "bench_ingest"
BEAM_ARGS = list(ingest_options.LOCAL_BEAM_ARGS)
OPTIONS = ingest.IngestOptions(frame_stride=1, max_frames=None, jpeg_quality=90)  # every frame
# (classes, videos per class, frames, height, width): UCF101-sized clips, 320x240 at 25 fps.
SIZES = {"full": (4, 75, 300, 240, 320), "quick": (2, 3, 24, 240, 320)}


def textured_clip(rng: np.random.Generator, frames: int, height: int, width: int) -> np.ndarray:
    """Camera-like content (smooth texture panning, fine grain): what makes decoding and JPEG
    cost what they cost on real footage; the flat synthetic squares would flatter both."""
    small = rng.integers(0, 256, (height // 8 + frames, width // 8 + frames, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize((small.shape[1] * 8, small.shape[0] * 8)))
    clip = np.stack([big[i : i + height, 2 * i : 2 * i + width] for i in range(frames)])
    grain = rng.integers(-2, 3, clip.shape[:-1] + (1,), dtype=np.int16)
    return np.clip(clip + grain, 0, 255).astype(np.uint8)


def make_videos(root: Path, size: tuple[int, ...]) -> None:
    """Folder-per-class .avi files (MPEG-4 Part 2, as UCF101's XviD), made once and kept."""
    classes, per_class, frames, height, width = size
    marker = root / ("ready-" + "x".join(map(str, size)))
    if marker.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    for c in range(classes):
        (root / f"Class{c}").mkdir(parents=True)
        for i in range(per_class):
            clip = textured_clip(np.random.default_rng([c, i]), frames, height, width)
            path = root / f"Class{c}" / f"v_Class{c}_g{i // 5 + 1:02d}_c{i % 5 + 1:02d}.avi"
            synthetic.write_video(path, clip, fps=25)
    marker.touch()


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (Beam's worker processes)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


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


def default_options_examples(records) -> dict:
    """Frames, bytes and CPU per example with IngestOptions() (what real data gets)."""
    options = ingest.IngestOptions()
    cpu, sizes, frames, steps = _cpu_seconds(), [], [], set()
    for record in records:
        clip = video.decode_video(
            record.path, options.frame_stride, options.max_frames, options.short_side
        )
        sizes.append(len(ingest.to_example(record, clip, options.jpeg_quality)))
        frames.append(len(clip.frames))
        steps.add(round(clip.time_step, 4))
    return {
        "options": dataclasses.asdict(options),
        "videos": len(records),
        "frames_per_example": round(float(np.mean(frames)), 1),
        "time_steps_s": sorted(steps),
        "bytes_per_example": round(float(np.mean(sizes))),
        "bytes_per_frame": round(sum(sizes) / sum(frames)),
        "cpu_s_per_video": round((_cpu_seconds() - cpu) / len(records), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few small videos: a smoke run")
    args = parser.parse_args(argv)
    size = "quick" if args.quick else "full"
    data_root = DATA_DIR / size
    make_videos(data_root, SIZES[size])
    make_videos(DATA_DIR / "quick", SIZES["quick"])
    records = video_sets.list_videos(str(data_root)).records
    load_before = results.load_1min()  # the machine may be shared: record how busy it was
    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    try:
        cpu = _cpu_seconds()
        loop_s = plain_loop(records, str(work / "loop.tfrecord.gz"))
        cpu, loop_cpu = _cpu_seconds(), _cpu_seconds() - cpu
        start = time.perf_counter()
        summary = ingest.run(str(data_root), str(work / "beam"), 1, OPTIONS, BEAM_ARGS)
        beam_s = time.perf_counter() - start
        beam_cpu = _cpu_seconds() - cpu
        beam_bytes = sum(f.stat().st_size for f in (work / "beam").glob("Split-*/*.gz"))
        # Beam's fixed cost: the same pipeline over the 6 small "quick" videos.
        start = time.perf_counter()
        ingest.run(str(DATA_DIR / "quick"), str(work / "startup"), 1, OPTIONS, BEAM_ARGS)
        startup_s = time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    defaults = default_options_examples(records[:10])
    videos, frames = len(records), summary.metrics["frames"]
    assert summary.metrics["videos_good"] == videos, summary
    result = {
        "size": size,
        "videos": videos,
        "frames": frames,
        "video": "{4}x{3}, {2} frames, textured, mpeg4/avi 400 kbit/s".format(*SIZES[size]),
        "options": dataclasses.asdict(OPTIONS),
        # cpu_s well below 1x (loop) or 2x (Beam) the wall time means others used the cores.
        "single_process_loop": _rates(loop_s, videos, frames) | {"cpu_s": round(loop_cpu, 1)},
        "beam_2_workers": _rates(beam_s, videos, frames)
        | {"cpu_s": round(beam_cpu, 1), "beam_args": BEAM_ARGS},
        "speedup": round(loop_s / beam_s, 2),
        "beam_fixed_cost_s": round(startup_s, 2),  # start-up etc.: a run over 6 small videos
        "speedup_without_fixed_cost": (
            round(loop_s / (beam_s - startup_s), 2) if beam_s > startup_s + 1 else None
        ),
        "output_bytes_per_video_gzip": round(beam_bytes / videos),
        "default_options": defaults,
        "load_1min": [load_before, results.load_1min()],  # before, after
    }
    results.write("ingest_speed", result)
    print(f"{'':28}{'seconds':>9}{'cpu s':>9}{'videos/s':>10}{'frames/s':>10}")
    for name in ("single_process_loop", "beam_2_workers"):
        r = result[name]
        print(
            f"{name:28}{r['seconds']:9.1f}{r['cpu_s']:9.1f}"
            f"{r['videos_per_s']:10.2f}{r['frames_per_s']:10.1f}"
        )
    print(
        f"speedup {result['speedup']}x over {videos} videos ({result['video']}); "
        f"Beam's fixed cost {startup_s:.1f} s ({result['speedup_without_fixed_cost']}x without it); "
        f"{result['output_bytes_per_video_gzip'] / 1e3:.0f} kB per video (GZIP TFRecord). "
        f"-> {RESULTS}"
    )
    print(
        f"IngestOptions() defaults: {defaults['frames_per_example']} frames at steps "
        f"{defaults['time_steps_s']} s, {defaults['bytes_per_example'] / 1e6:.2f} MB per example, "
        f"{defaults['cpu_s_per_video']} CPU s per video"
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
