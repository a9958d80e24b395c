"""A video file -> top-5 classes from a TF Serving REST endpoint (this server or TF Serving itself).

    python -m serving.client --video clip.avi --url http://127.0.0.1:8501 --model NAME [--views]

The video is decoded exactly as ingestion decoded the model's training videos (data/video.py,
with the IngestOptions the model records: its ingest_settings signature; flags override) and
sent as the serialized tf.Example the model was trained and evaluated on (only `frames`, JPEG
bytes), so the model applies the evaluation sampling itself: serving_default classifies one view
(the centre clip, centre crop); --views asks serving_views for the average over the model's
evaluation views (e.g. 4 clips x 3 crops: 12 times the work). Standard library HTTP only.
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

from data import example_proto, features, video
from data.ingest_options import IngestOptions
from data.options import add_flags, from_flags

DEFAULT_OPTIONS = IngestOptions()  # ingestion's real-data defaults
# model/export.py's signatures (not imported: that would load TensorFlow)
ONE_VIEW, VIEWS, INGEST_SETTINGS = "serving_default", "serving_views", "ingest_settings"
DECODING_FLAGS = ("frame_stride", "max_frames", "short_side", "jpeg_quality")


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


def _model_url(url: str, model: str, version: int | None) -> str:
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version is not None else "")
    return url.rstrip("/") + path


def predict(
    url: str, model: str, body: dict, version: int | None = None, timeout: float = 60.0
) -> dict:
    """POSTs a TF Serving predict request; returns the decoded JSON response."""
    request = urllib.request.Request(
        _model_url(url, model, version) + ":predict",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    return _send(request, timeout)


def _send(request: urllib.request.Request, timeout: float) -> dict:
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


def model_ingest_options(
    url: str, model: str, version: int | None = None, timeout: float = 60.0
) -> IngestOptions | None:
    """The IngestOptions the served model's training examples were made with (its
    ingest_settings signature); None for a model that does not record them."""
    metadata = _send(urllib.request.Request(_model_url(url, model, version) + "/metadata"), timeout)
    if INGEST_SETTINGS not in metadata["metadata"]["signature_def"]["signature_def"]:
        return None
    body = {"signature_name": INGEST_SETTINGS, "instances": [""]}
    (recorded,) = predict(url, model, body, version, timeout)["predictions"]
    return IngestOptions.from_json(recorded) if recorded else None


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
    add_flags(parser, IngestOptions, DECODING_FLAGS, help_prefix="decode as ingestion: ")
    parser.epilog = (
        "Decoding flags default to the settings the model records (its ingest_settings "
        "signature), else to ingestion's real-data defaults."
    )
    args = parser.parse_args(argv)
    try:
        recorded = model_ingest_options(args.url, args.model, args.version, args.timeout)
        if recorded is None:
            print(
                f"note: {args.model} does not record its ingest settings; decoding with "
                "ingestion's defaults unless flags say otherwise",
                file=sys.stderr,
            )
        options = from_flags(recorded or DEFAULT_OPTIONS, args, DECODING_FLAGS)
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
