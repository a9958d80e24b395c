"""Decode a video with PyAV (FFmpeg), sample frames, resize the short side, encode frames as JPEG.

Shared by the Beam ingest, the benchmark's plain loop and (later) the serving client, so every
path does exactly the same pixel work.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import av
import numpy as np
from PIL import Image

# Containers such as AVI declare a frame count in their header; decoding clearly fewer frames
# than declared means the file was cut short. A little slack absorbs muxers that count loosely.
_TRUNCATION_SLACK = 0.01


class VideoError(Exception):
    """A video that cannot be used; the message says why (missing, empty, truncated, ...)."""


@dataclass
class DecodedVideo:
    frames: list[np.ndarray]  # RGB uint8 [H, W, 3], in display order, after sampling and resize
    fps: float
    height: int
    width: int
    declared_frames: int  # the container's own count; 0 where it does not say


def resized_shape(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """(height, width) with the shorter side scaled to `short_side`, keeping the aspect ratio."""
    if not short_side:
        return height, width
    scale = short_side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def decode_video(
    path: str | os.PathLike,
    frame_stride: int = 1,
    max_frames: int | None = None,
    short_side: int | None = None,
) -> DecodedVideo:
    """Every `frame_stride`-th frame from the first, at most `max_frames`, as RGB arrays.

    Raises VideoError for a missing, empty, undecodable or truncated file.
    """
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    path = os.fspath(path)
    if "://" in path:  # a bucket (gs://...): FFmpeg reads through a file object
        import tensorflow as tf  # only here: the local path needs no TensorFlow

        gfile = tf.io.gfile
        exists, size = gfile.exists, lambda p: gfile.stat(p).length
        source = lambda p: gfile.GFile(p, "rb")  # noqa: E731
    else:
        exists, size, source = os.path.exists, os.path.getsize, lambda p: p
    if not exists(path):
        raise VideoError("file not found")
    if size(path) == 0:
        raise VideoError("empty file (0 bytes)")
    try:
        with av.open(source(path)) as container:
            return _decode(container, frame_stride, max_frames, short_side)
    except VideoError:
        raise
    except (av.FFmpegError, ValueError, EOFError) as error:
        raise VideoError(f"undecodable: {type(error).__name__}: {error}") from error


def _decode(container, frame_stride, max_frames, short_side) -> DecodedVideo:
    if not container.streams.video:
        raise VideoError("no video stream")
    stream = container.streams.video[0]
    declared = stream.frames or 0
    fps = float(stream.average_rate or stream.guessed_rate or 0.0)
    frames: list[np.ndarray] = []
    decoded = packets_seen = 0
    corrupt = None
    for packet in container.demux(stream):
        # Count every packet but the final flush one (empty, no timestamp); AVI's zero-size
        # "dropped frame" packets count, as the declared frame count includes them.
        packets_seen += bool(packet.size) or packet.dts is not None
        if max_frames and len(frames) >= max_frames:
            continue  # enough frames: only demux (cheap) to see whether the file is complete
        try:
            decoded_frames = packet.decode()
        except av.FFmpegError as error:  # judged below: a cut-off file or corrupt data
            corrupt = corrupt or error
            continue
        for frame in decoded_frames:
            if decoded % frame_stride == 0 and not (max_frames and len(frames) >= max_frames):
                height, width = resized_shape(frame.height, frame.width, short_side)
                frames.append(
                    frame.to_ndarray(
                        width=width, height=height, format="rgb24", interpolation="BILINEAR"
                    )
                )
            decoded += 1
    if declared and packets_seen < declared - max(1, declared * _TRUNCATION_SLACK):
        raise VideoError(f"truncated: {packets_seen} of {declared} declared frames present")
    if corrupt:
        raise VideoError(f"undecodable: corrupt frame data: {corrupt}")
    if not frames:
        raise VideoError("undecodable: no video frames")
    height, width = frames[0].shape[:2]
    return DecodedVideo(frames, fps, height, width, declared)


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    """RGB uint8 [H, W, 3] -> JPEG bytes (what tf.io.decode_jpeg reads back)."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
