"""Flags both runners share: the same names for the same settings, defaults from configs."""

from __future__ import annotations

import argparse
import dataclasses
import shlex

from model.options import TrainOptions
from pipeline import configs


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
    parser.add_argument("--variant", help=f"Video Swin variant (default: {TrainOptions.variant})")
    parser.add_argument("--pretrained", help="official .pth or a `python -m model.convert` dir")
    parser.add_argument("--clip-frames", type=int, help="frames per clip the model sees")
    parser.add_argument("--image-size", type=int, help="crop size in pixels")
    parser.add_argument("--epochs", type=int, help="passes over the training split")
    parser.add_argument("--batch-size", type=int, help="clips per replica")
    parser.add_argument("--learning-rate", type=float, help="peak learning rate of the head")
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
    from data import ucf101

    if "://" in data_root:  # a bucket: not looked into at compile time; pass --schema
        return None
    try:
        classes = ucf101.class_index_of(data_root)
    except (ucf101.DataLayoutError, OSError):
        return None  # not readable from here (e.g. a bucket at compile time): infer
    official = ucf101.read_class_index(configs.UCF101_CLASS_INDEX)
    return configs.UCF101_SCHEMA if classes == official else None


def train_options(base: TrainOptions, args: argparse.Namespace) -> TrainOptions:
    """`base` with every training flag that was given."""
    changes = {
        "variant": args.variant,
        "clip_frames": args.clip_frames,
        "image_size": args.image_size,
        "gpus": args.gpus,
        "pretrained": args.pretrained,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
    }
    if args.eval_views:
        changes["eval_clips"], changes["eval_crops"] = args.eval_views
    return dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})


def beam_pipeline_args(default: list[str], args: argparse.Namespace) -> list[str]:
    """--beam-pipeline-args split into flags, else `default`."""
    return shlex.split(args.beam_pipeline_args) if args.beam_pipeline_args else list(default)
