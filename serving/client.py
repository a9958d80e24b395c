"""A video file -> top-5 classes from a TF Serving REST endpoint (this server or TF Serving itself).

    python -m serving.client --video clip.avi --url http://127.0.0.1:8501 --model NAME [--views]

The video is decoded exactly as ingestion does (data/video.py, the same IngestOptions) and sent
as the serialized tf.Example the model was trained and evaluated on (only `frames`, JPEG bytes),
so the model applies the evaluation sampling itself: serving_default classifies one view (the
centre clip, centre crop); --views asks serving_views for the average over the model's evaluation
views (e.g. 4 clips x 3 crops: 12 times the work). Standard library HTTP only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import json
import sys
import urllib.error
import urllib.request
import warnings

# data.ingest imports Beam, whose Google API packages announce their Python support window.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.api_core")

from data import example_proto, features, video  # noqa: E402
from data.ingest import IngestOptions  # noqa: E402

DEFAULT_OPTIONS = IngestOptions()  # ingestion's real-data defaults
ONE_VIEW, VIEWS = "serving_default", "serving_views"  # model/export.py's signatures


class ServingError(RuntimeError):
    """The endpoint answered with an error (its message included) or not at all."""


@dataclasses.dataclass
class Prediction:
    top: list[tuple[str, float]]  # (class name, probability), best first
    probabilities: list[float]  # one per class, in the model's class order


def video_example(path, options: IngestOptions = DEFAULT_OPTIONS) -> bytes:
    """A serialized tf.Example holding only `frames`, decoded as ingestion decodes."""
    clip = video.decode_video(path, options.frame_stride, options.max_frames, options.short_side)
    frames = [video.encode_jpeg(f, options.jpeg_quality) for f in clip.frames]
    return example_proto.make_example({features.FRAMES: frames})


def predict(
    url: str, model: str, body: dict, version: int | None = None, timeout: float = 60.0
) -> dict:
    """POSTs a TF Serving predict request; returns the decoded JSON response."""
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version is not None else "")
    request = urllib.request.Request(
        url.rstrip("/") + path + ":predict",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        with contextlib.suppress(ValueError, KeyError, TypeError):
            detail = json.loads(detail)["error"]
        raise ServingError(f"{request.full_url}: HTTP {error.code}: {detail}") from None
    except urllib.error.URLError as error:
        raise ServingError(f"{request.full_url}: {error.reason}") from None


def predict_video(
    path,
    url: str,
    model: str,
    options: IngestOptions = DEFAULT_OPTIONS,
    version: int | None = None,
    timeout: float = 60.0,
    views: bool = False,
) -> Prediction:
    """Top classes of one video: one view (serving_default), or with views=True the average
    over the model's evaluation views (serving_views)."""
    example = video_example(path, options)
    body = {
        "signature_name": VIEWS if views else ONE_VIEW,
        "instances": [{"b64": base64.b64encode(example).decode("ascii")}],
    }
    (row,) = predict(url, model, body, version, timeout)["predictions"]
    return Prediction(list(zip(row["classes"], row["scores"], strict=True)), row["probabilities"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.client", description=__doc__)
    parser.add_argument("--video", required=True, help="a video file FFmpeg reads")
    parser.add_argument("--url", default="http://127.0.0.1:8501", help="the REST endpoint")
    parser.add_argument("--model", required=True, help="model name (the serving folder's name)")
    parser.add_argument("--version", type=int, help="a specific version (default: the newest)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds")
    parser.add_argument(
        "--views",
        action="store_true",
        help="average the model's evaluation views (clips x crops, as it was evaluated) instead "
        "of classifying the centre clip and crop",
    )
    defaults = DEFAULT_OPTIONS
    for field in dataclasses.fields(IngestOptions):
        if field.name in ("frame_stride", "max_frames", "short_side", "jpeg_quality"):
            parser.add_argument(
                "--" + field.name.replace("_", "-"),
                type=int,
                default=getattr(defaults, field.name),
                help=f"as ingestion: {field.metadata['help']} (default %(default)s)",
            )
    args = parser.parse_args(argv)
    options = IngestOptions(
        frame_stride=args.frame_stride,
        max_frames=args.max_frames or None,
        short_side=args.short_side or None,
        jpeg_quality=args.jpeg_quality,
    )
    try:
        prediction = predict_video(
            args.video, args.url, args.model, options, args.version, args.timeout, args.views
        )
    except (video.VideoError, ServingError) as error:
        print(f"error: {args.video}: {error}", file=sys.stderr)
        return 1
    for rank, (name, score) in enumerate(prediction.top, 1):
        print(f"{rank}. {name:<30} {score:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
