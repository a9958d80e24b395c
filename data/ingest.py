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

from data import counts, example_proto, ingest_options, video, video_sets
from data import features as F
from data.ingest_options import IngestOptions
from data.options import add_flags, from_flags

METRICS_NAMESPACE = "video_ingest"
ERRORS = "errors"
ERRORS_FILE = "errors.jsonl"
EXAMPLES_FILE = "data_tfrecord"  # Split-<split>/data_tfrecord-*.gz, as TFX's ExampleGen names them


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


def to_example(
    record: video_sets.VideoRecord, clip: video.DecodedVideo, jpeg_quality: int
) -> bytes:
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

    def process(self, record: video_sets.VideoRecord):
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
            ERRORS, *video_sets.SPLITS
        )


def write_errors(errors, path: str):
    """The error report as one file (empty when every video was good)."""
    root, ext = os.path.splitext(path)
    return errors | "WriteErrors" >> beam.io.WriteToText(
        root, file_name_suffix=ext, shard_name_template=""
    )


def stored_order(records) -> list[video_sets.VideoRecord]:
    """The records in a fixed pseudo-random order (by a hash of the video id): the order the
    examples are written in, so class after class never reaches the Trainer's shuffle buffer."""
    return sorted(records, key=lambda r: hashlib.sha256(r.video_id.encode()).digest())


def add_ingest(pipeline, listing: video_sets.VideoListing, options: IngestOptions, output: str):
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
    for name in video_sets.SPLITS:
        _ = outputs[name] | f"Write[{name}]" >> beam.io.WriteToTFRecord(
            os.path.join(output, f"Split-{name}", EXAMPLES_FILE), file_name_suffix=".gz"
        )
    write_errors(outputs[ERRORS], os.path.join(output, ERRORS_FILE))


def summarize(listing: video_sets.VideoListing, errors_path: str) -> IngestSummary:
    with FileSystems.open(errors_path) as f:
        bad = [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]
    good = {s: len(listing.split(s)) - sum(b["split"] == s for b in bad) for s in video_sets.SPLITS}
    return IngestSummary(len(listing.records), good, bad)


def write_beside_examples(examples_dir: str, summary, options: IngestOptions) -> None:
    """counts.json (the Trainer sizes epochs without a read) and ingest_options.json (the served
    model tells clients how to decode), outside the split folders."""
    counts.write(examples_dir, summary.good)
    ingest_options.write(examples_dir, options)


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
    listing = video_sets.list_videos(data_root, split, options.eval_fraction)
    report = os.path.join(output, ERRORS_FILE)
    pipeline = beam.Pipeline(
        options=PipelineOptions(
            list(ingest_options.LOCAL_BEAM_ARGS if beam_args is None else beam_args)
        )
    )
    add_ingest(pipeline, listing, options, output)
    result = pipeline.run()
    result.wait_until_finish()
    summary = summarize(listing, report)
    counters = result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace(METRICS_NAMESPACE)
    )
    summary.metrics = {c.key.metric.name: c.committed for c in counters["counters"]}
    write_beside_examples(output, summary, options)
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
    add_flags(parser, IngestOptions, defaults=IngestOptions())
    args, beam_args = parser.parse_known_args(argv)
    options = from_flags(IngestOptions(), args)
    logging.basicConfig(level=logging.WARNING)  # Beam's workers log every bundle at INFO
    try:
        summary = run(args.data_root, args.output, args.split, options, beam_args or None)
    except (TooManyBadVideosError, video_sets.DataLayoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{summary}. Examples and {ERRORS_FILE} under {args.output}")
    print("Beam counters:", ", ".join(f"{k}={v}" for k, v in sorted(summary.metrics.items())))
    return 0


if __name__ == "__main__":
    # Run from the importable module, so Beam workers unpickle data.ingest.*, not __main__.*
    from data import ingest

    sys.exit(ingest.main())
