"""Videos -> GZIP TFRecords of tf.Example with Apache Beam: the transform the ExampleGen runs too.

    python -m data.ingest --data-root ROOT [--split 1] --output OUT [beam args]

writes OUT/Split-train/*.gz, OUT/Split-eval/*.gz, OUT/errors.jsonl (one line per unusable
video: path, split, reason) and OUT/counts.json (examples per split, data/counts.py). Unknown
flags go to Beam, e.g. `--direct_num_workers 2 --direct_running_mode multi_processing`, or
`--runner DataflowRunner ...`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from data import counts, example_proto, ucf101, video
from data import features as F

METRICS_NAMESPACE = "video_ingest"
ERRORS = "errors"
ERRORS_FILE = "errors.jsonl"
EXAMPLES_FILE = "data_tfrecord"  # Split-<split>/data_tfrecord-*.gz, as TFX's ExampleGen names them
DEFAULT_BEAM_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")


def _option(default, help_text):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class IngestOptions:
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

    frame_stride: int = _option(2, "grid step in frames at the video's frame rate")
    max_frames: int | None = _option(
        128, "frames per video at most: longer videos at 2x, 4x... the step (0 or None: all)"
    )
    short_side: int | None = _option(None, "resize the shorter side to this (0 or None: keep)")
    jpeg_quality: int = _option(90, "JPEG quality of the stored frames")
    max_bad_fraction: float = _option(0.05, "fail when more of the listed videos are unusable")
    eval_fraction: float = _option(0.3, "folder-per-class sets: share of groups hashed to eval")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IngestOptions:
        return cls(**json.loads(text))


class TooManyBadVideosError(RuntimeError):
    pass


@dataclasses.dataclass
class IngestSummary:
    listed: int
    good: dict[str, int]  # per split
    bad: list[dict]  # the error report's lines
    metrics: dict[str, int] = dataclasses.field(default_factory=dict)  # Beam counters

    def __str__(self) -> str:
        good = ", ".join(f"{s}={n}" for s, n in self.good.items())
        return f"{self.listed} videos listed: {good} written, {len(self.bad)} unusable"


def to_example(record: ucf101.VideoRecord, clip: video.DecodedVideo, jpeg_quality: int) -> bytes:
    """A serialized tf.train.Example of one decoded video (features: data/features.py)."""
    jpegs: dict[int, bytes] = {}  # a frame held over several grid times is encoded once
    for frame in clip.frames:
        if id(frame) not in jpegs:
            jpegs[id(frame)] = video.encode_jpeg(frame, jpeg_quality)
    return example_proto.make_example(
        {
            F.FRAMES: [jpegs[id(frame)] for frame in clip.frames],
            F.LABEL: [record.label],
            F.LABEL_NAME: [record.label_name.encode()],
            F.VIDEO_ID: [record.video_id.encode()],
            F.GROUP: [record.group.encode()],
            F.NUM_FRAMES: [len(clip.frames)],
            F.FPS: [float(clip.fps)],
            F.TIME_STEP: [float(clip.time_step)],
            F.HEIGHT: [clip.height],
            F.WIDTH: [clip.width],
        }
    )


class VideoToExample(beam.DoFn):
    """One listed video -> a serialized tf.Example on its split's output, or one error line."""

    def __init__(self, options: IngestOptions):
        self._options = options
        self._good = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "videos_good")
        self._bad = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "videos_bad")
        self._frames = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "frames")
        self._bytes = beam.metrics.Metrics.distribution(METRICS_NAMESPACE, "example_bytes")

    def process(self, record: ucf101.VideoRecord):
        reason = record.error
        if not reason:
            try:
                o = self._options
                clip = video.decode_video(record.path, o.frame_stride, o.max_frames, o.short_side)
            except video.VideoError as error:
                reason = str(error)
        if reason:
            self._bad.inc()
            beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"bad_{reason.split()[0]}").inc()
            line = {"path": record.path, "split": record.split, "reason": reason}
            yield beam.pvalue.TaggedOutput(ERRORS, json.dumps(line))
            return
        data = to_example(record, clip, self._options.jpeg_quality)
        frames = len(clip.frames)
        del clip  # not held while the example is written downstream
        self._good.inc()
        self._frames.inc(frames)
        self._bytes.update(len(data))
        yield beam.pvalue.TaggedOutput(record.split, data)


class IngestVideos(beam.PTransform):
    """PCollection of VideoRecord -> outputs "train", "eval" (serialized tf.Example) and
    "errors" (JSON lines). Every input lands in exactly one of them."""

    def __init__(self, options: IngestOptions):
        super().__init__()
        self._options = options

    def expand(self, records):
        return records | "Decode" >> beam.ParDo(VideoToExample(self._options)).with_outputs(
            ERRORS, *ucf101.SPLITS
        )


def write_errors(errors, path: str):
    """The error report as one file (empty when every video was good)."""
    root, ext = os.path.splitext(path)
    return errors | "WriteErrors" >> beam.io.WriteToText(
        root, file_name_suffix=ext, shard_name_template=""
    )


def stored_order(records) -> list[ucf101.VideoRecord]:
    """The records in a fixed pseudo-random order (by a hash of the video id): the order the
    examples are written in, so class after class never reaches the Trainer's shuffle buffer."""
    return sorted(records, key=lambda r: hashlib.sha256(r.video_id.encode()).digest())


def add_ingest(pipeline, listing: ucf101.VideoListing, options: IngestOptions, output: str):
    """Adds listing -> `output`/Split-<split>/data_tfrecord-*.gz and `output`/errors.jsonl.

    Examples stream from decoding to the files: each Beam worker holds one decoded video at a
    time and nothing gathers the examples (no shuffle of them, which on a local runner would
    hold every example in one process: TFX's ExampleGen reshuffles before writing).
    """
    outputs = (
        pipeline
        | "ListVideos" >> beam.Create(stored_order(listing.records))
        | "IngestVideos" >> IngestVideos(options)
    )
    for name in ucf101.SPLITS:
        _ = outputs[name] | f"Write[{name}]" >> beam.io.WriteToTFRecord(
            os.path.join(output, f"Split-{name}", EXAMPLES_FILE), file_name_suffix=".gz"
        )
    write_errors(outputs[ERRORS], os.path.join(output, ERRORS_FILE))


def summarize(listing: ucf101.VideoListing, errors_path: str) -> IngestSummary:
    with FileSystems.open(errors_path) as f:
        bad = [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]
    good = {s: len(listing.split(s)) - sum(b["split"] == s for b in bad) for s in ucf101.SPLITS}
    return IngestSummary(len(listing.records), good, bad)


def check_bad_fraction(summary: IngestSummary, max_bad_fraction: float, report: str) -> None:
    """Raises when too much of the listed data is unusable, naming some files and the report."""
    if summary.listed == 0:
        raise TooManyBadVideosError("no videos were listed: check the data root")
    fraction = len(summary.bad) / summary.listed
    if fraction > max_bad_fraction:
        sample = "; ".join(f"{b['path']}: {b['reason']}" for b in summary.bad[:3])
        raise TooManyBadVideosError(
            f"{len(summary.bad)} of {summary.listed} videos ({fraction:.1%}) are unusable, more "
            f"than max_bad_fraction={max_bad_fraction:.1%}. First: {sample}. All in {report}"
        )


def run(
    data_root: str,
    output: str,
    split: int = 1,
    options: IngestOptions | None = None,
    beam_args: list[str] | None = None,
) -> IngestSummary:
    """Lists, decodes and writes; returns the summary (raises past max_bad_fraction)."""
    options = options or IngestOptions()
    listing = ucf101.list_videos(data_root, split, options.eval_fraction)
    report = os.path.join(output, ERRORS_FILE)
    pipeline = beam.Pipeline(
        options=PipelineOptions(list(DEFAULT_BEAM_ARGS if beam_args is None else beam_args))
    )
    add_ingest(pipeline, listing, options, output)
    result = pipeline.run()
    result.wait_until_finish()
    summary = summarize(listing, report)
    counters = result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace(METRICS_NAMESPACE)
    )
    summary.metrics = {c.key.metric.name: c.committed for c in counters["counters"]}
    counts.write(output, summary.good)
    logging.info("%s; error report: %s", summary, report)
    check_bad_fraction(summary, options.max_bad_fraction, report)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="Other flags are passed to Beam."
    )
    parser.add_argument("--data-root", required=True, help="UCF101 or folder-per-class root")
    parser.add_argument("--split", type=int, default=1, choices=(1, 2, 3), help="UCF101 split")
    parser.add_argument("--output", required=True)
    for field in dataclasses.fields(IngestOptions):
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            type=float if isinstance(field.default, float) else int,
            default=field.default,
            help=f"{field.metadata['help']} (default: {field.default})",
        )
    args, beam_args = parser.parse_known_args(argv)
    options = IngestOptions(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(IngestOptions)}
    )
    logging.basicConfig(level=logging.WARNING)  # Beam's workers log every bundle at INFO
    try:
        summary = run(args.data_root, args.output, args.split, options, beam_args or None)
    except (TooManyBadVideosError, ucf101.DataLayoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{summary}. Examples and {ERRORS_FILE} under {args.output}")
    print("Beam counters:", ", ".join(f"{k}={v}" for k, v in sorted(summary.metrics.items())))
    return 0


if __name__ == "__main__":
    # Run from the importable module, so Beam workers unpickle data.ingest.*, not __main__.*
    from data import ingest

    sys.exit(ingest.main())
