"""Flags both runners share: the same names for the same settings, defaults from configs."""

from __future__ import annotations

import argparse
import dataclasses
import shlex

from data.options import add_flags, from_flags
from model.options import TrainOptions
from pipeline import configs

TRAINING_FLAGS = (
    "variant",
    "pretrained",
    "clip_frames",
    "image_size",
    "epochs",
    "batch_size",
    "learning_rate",
)


def add_pipeline_flags(parser: argparse.ArgumentParser, gpus_default: int = 0) -> None:
    parser.add_argument(
        "--split",
        type=int,
        default=configs.UCF_SPLIT,
        choices=(1, 2, 3),
        help="UCF101's official split",
    )
    parser.add_argument(
        "--schema",
        help="curated schema.pbtxt to validate against (default: UCF101's for an official UCF101 "
        "root, the embedded set's for it, else inferred)",
    )
    # Defaults shown are the real-data recipe's; the embedded set's are in configs.
    add_flags(parser, TrainOptions, TRAINING_FLAGS)
    parser.add_argument("--min-accuracy", type=float, help="eval top-1 needed to bless a model")
    parser.add_argument(
        "--eval-views",
        type=_views,
        metavar="CLIPSxCROPS",
        help="multi-view evaluation, e.g. 4x3 (crops: 1 or 3); its top-1 gates blessing, and "
        f"1x1 evaluates the one served view (default: {TrainOptions.eval_clips}x"
        f"{TrainOptions.eval_crops} on real data, 1x1 on the embedded set)",
    )
    parser.add_argument(
        "--allow-anomalies",
        action="store_true",
        help="train even when ExampleValidator finds anomalies (after you have read them)",
    )
    parser.add_argument(
        "--validate-only",
        action="store_true",
        help="ingest and validate only (ExampleValidator's report); train nothing",
    )
    parser.add_argument(
        "--gpus",
        type=int,
        default=gpus_default,
        help="GPUs the Trainer needs: it fails at start unless it sees them "
        f"(default: {gpus_default})",
    )
    parser.add_argument(
        "--beam-pipeline-args",
        help="Beam flags for ExampleGen, StatisticsGen, Transform and Evaluator, one string, e.g. "
        "'--runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp'",
    )
    spans = parser.add_argument_group("arriving data and caching")
    spans.add_argument(
        "--span-pattern",
        default=configs.SPAN_PATTERN,
        help="how span folders under the data root are named: {SPAN} a number, or {YYYY}, {MM} "
        "and {DD} a date (default: %(default)s; a root without them is one span)",
    )
    spans.add_argument(
        "--span-window",
        type=int,
        default=configs.SPAN_WINDOW,
        help="train on the last N spans (default: %(default)s, all of them)",
    )
    spans.add_argument(
        "--train-without-new-data",
        action="store_true",
        help="train even when the window is what the served model was trained on",
    )
    spans.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        help="run every step again (the same results, slower): by default a step whose inputs "
        "and parameters are unchanged reuses its earlier result",
    )
    parser.add_argument(
        "--model-name",
        default=configs.MODEL_NAME,
        help="served model name: blessed models go to <serving-dir>/<model-name>/",
    )


def _views(text: str) -> tuple[int, int]:
    clips, _, crops = text.lower().partition("x")
    if not (clips.isdigit() and crops.isdigit()):
        raise argparse.ArgumentTypeError(f"expected CLIPSxCROPS such as 4x3, got {text!r}")
    return int(clips), int(crops)


def default_schema(data_root: str) -> str | None:
    """UCF101's curated schema for an official UCF101 root; None (infer) for other sets."""
    from data import video_sets

    if "://" in data_root:  # a bucket: not looked into at compile time; pass --schema
        return None
    try:
        classes = video_sets.class_index_of(data_root)
    except (video_sets.DataLayoutError, OSError):
        return None  # not readable from here (e.g. a bucket at compile time): infer
    official = video_sets.read_class_index(configs.UCF101_CLASS_INDEX)
    return configs.UCF101_SCHEMA if classes == official else None


def train_options(base: TrainOptions, args: argparse.Namespace) -> TrainOptions:
    """`base` with every training flag that was given."""
    options = from_flags(base, args, (*TRAINING_FLAGS, "gpus"))
    if args.eval_views:
        clips, crops = args.eval_views
        options = dataclasses.replace(options, eval_clips=clips, eval_crops=crops)
    return options


def beam_pipeline_args(default: list[str], args: argparse.Namespace) -> list[str]:
    """--beam-pipeline-args split into flags, else `default`."""
    return shlex.split(args.beam_pipeline_args) if args.beam_pipeline_args else list(default)


def span_settings(args: argparse.Namespace) -> dict:
    """create_pipeline's arguments for arriving data, from the flags."""
    from data import spans

    if args.span_window < 0:
        raise ValueError("--span-window counts spans: 0 (all) or more")
    spans.pattern_regex(args.span_pattern)  # a pattern it cannot use fails here, saying why
    return {
        "span_pattern": args.span_pattern,
        "span_window": args.span_window,
        "train_without_new_data": args.train_without_new_data,
        "enable_cache": args.cache,
    }
