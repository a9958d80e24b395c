"""Decode a video with PyAV (FFmpeg), sample it on its timeline, resize, encode frames as JPEG.

Shared by the Beam ingest, the benchmark's plain loop and the serving client, so every path does
exactly the same pixel work.

Sampling follows timestamps (as FFmpeg's players guess them), not packet counts: stored
frame k is the frame showing at time start + k * time_step (start: the first frame's time), so
gaps in the timestamps (dropped frames, an AVI index with holes) and variable frame rates are
filled by the frame on screen at each grid time, as a player shows them. time_step is
frame_stride / fps (fps: the container's average rate); when the whole video holds more than
max_frames such grid points, time_step doubles (stride, 2 x stride, 4 x stride, ...) until they
fit: the stored frames always cover the whole video, uniformly in time, within max_frames.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from PIL import Image

from data import storage

# A file is truncated when its data ends clearly before the end its container declares. The
# slack absorbs muxers that round durations and an audio track slightly longer than the video.
_TRUNCATION_SLACK_FRAMES = 4
_TRUNCATION_SLACK_FRACTION = 0.05
_MAX_SPAN = 24 * 3600  # seconds: a timestamp further from the first frame is garbage, not video
_MKV_DURATION = re.compile(r"^(\d+):(\d\d):(\d\d(?:\.\d+)?)$")  # Matroska's per-track DURATION tag


class VideoError(Exception):
    """A video that cannot be used; the message says why (missing, empty, truncated, ...)."""


@dataclass
class DecodedVideo:
    frames: list[np.ndarray]  # RGB uint8 [H, W, 3]: frame k shows time start_time + k*time_step
    fps: float  # the container's average frame rate
    height: int
    width: int
    declared_frames: int  # the container's own count; 0 where it does not say
    time_step: float = 0.0  # seconds between consecutive stored frames
    start_time: float = 0.0  # seconds, the first frame's timestamp
    duration: float = 0.0  # seconds from the first frame to the end of the last one


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
    """The frames showing at start + k * time_step over the whole video, as RGB arrays.

    time_step = frame_stride / fps, doubled as often as needed to keep at most `max_frames`
    (None or 0: no limit). Raises VideoError for a missing, empty, undecodable or truncated file.
    """
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    path = os.fspath(path)
    if "://" in path:  # a bucket (gs://, s3://): FFmpeg reads through a file object
        exists, size, source = storage.exists, storage.size, storage.open
    else:
        exists, size, source = os.path.exists, os.path.getsize, lambda p: p
    if not exists(path):
        raise VideoError("file not found")
    if size(path) == 0:
        raise VideoError("empty file (0 bytes)")
    try:
        with av.open(source(path)) as container:
            return _decode(container, frame_stride, max_frames or 0, short_side)
    except VideoError:
        raise
    except (av.FFmpegError, ValueError, EOFError) as error:
        raise VideoError(f"undecodable: {type(error).__name__}: {error}") from error


class BestEffortTimestamp:
    """FFmpeg's guess_correct_pts (libavcodec/decode.c), which players use for display times:
    a decoded frame's pts, unless pts have gone backwards or repeated more often than dts
    (packed B-frames in old AVIs), then its dts. None when neither is known."""

    def __init__(self):
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts = self.last_dts = None

    def __call__(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        elif pts is not None:
            self.last_dts = pts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        elif dts is not None:
            self.last_pts = dts
        if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None):
            return pts
        return dts


class _TimelineSampler:
    """Keeps the frame showing at each grid time t0 + k * step, every `multiple`-th grid point,
    doubling `multiple` whenever more than `limit` would be kept (memory: at most limit + 1
    decoded frames, whatever the video's length)."""

    def __init__(self, step: Fraction, limit: int):
        self.step, self.limit = step, limit
        self.multiple, self.kept = 1, []
        self.t0 = self.last = self.last_time = None
        self._next = 0  # index of the next grid point

    def add(self, frame, time: Fraction) -> None:
        if self.t0 is None:
            self.t0 = time
        if time - self.t0 > _MAX_SPAN:  # the loop below would walk a grid point at a time
            raise VideoError(
                f"undecodable: a timestamp {float(time - self.t0):.0f} s after the first"
            )
        while self.last is not None and self.t0 + self._next * self.step < time:
            self._emit(self.last)  # the previous frame is still showing at this grid time
        if self.last_time is None or time >= self.last_time:
            self.last, self.last_time = frame, time

    def finish(self) -> None:
        while self.last is not None and self.t0 + self._next * self.step <= self.last_time:
            self._emit(self.last)

    def _emit(self, frame) -> None:
        if self._next % self.multiple == 0:
            self.kept.append(frame)
            if self.limit and len(self.kept) > self.limit:
                self.kept, self.multiple = self.kept[::2], self.multiple * 2
        self._next += 1


def _decode(container, frame_stride, max_frames, short_side) -> DecodedVideo:
    if not container.streams.video:
        raise VideoError("no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        raise VideoError("undecodable: no frame rate")
    fps = Fraction(rate)
    sampler = _TimelineSampler(frame_stride / fps, max_frames)
    timestamp = BestEffortTimestamp()
    cut = corrupt = None
    for packet in container.demux(stream):
        if packet.is_corrupt:  # the demuxer found this packet's data short: cut, or damaged
            cut = cut or packet
        elif packet.size:
            cut = None  # good data follows: the damage was not the file's end
        try:
            decoded = packet.decode()
        except av.FFmpegError as error:  # judged below: a cut-off file or corrupt data
            corrupt = corrupt or error
            continue
        for frame in decoded:
            pts = timestamp(frame.pts, frame.dts)
            if pts is not None:
                time = pts * stream.time_base
            else:  # no timestamp: the next slot after the previous frame
                time = sampler.last_time + 1 / fps if sampler.last is not None else Fraction(0)
            sampler.add(frame, time)
    sampler.finish()
    declared_end = _declared_end(container, stream, fps)
    data_end = sampler.last_time + 1 / fps if sampler.last is not None else None
    if declared_end is not None:
        declared = declared_end - (sampler.t0 or 0)  # the length, for a relative slack
        slack = max(_TRUNCATION_SLACK_FRAMES / fps, _TRUNCATION_SLACK_FRACTION * declared)
        if data_end is None or data_end < declared_end - slack:
            ends = f"ends at {float(data_end):.2f} s" if data_end is not None else "holds no frame"
            raise VideoError(
                f"truncated: data {ends}, the container declares {float(declared_end):.2f} s"
            )
    if cut is not None:
        at = f" at {float(cut.pts * stream.time_base):.2f} s" if cut.pts is not None else ""
        raise VideoError(f"truncated: frame data cut{at}")
    if corrupt:
        raise VideoError(f"undecodable: corrupt frame data: {corrupt}")
    if not sampler.kept:
        raise VideoError("undecodable: no video frames")
    frames = _to_rgb(sampler.kept, short_side)
    height, width = frames[0].shape[:2]
    return DecodedVideo(
        frames,
        float(fps),
        height,
        width,
        stream.frames or 0,
        time_step=float(sampler.step * sampler.multiple),
        start_time=float(sampler.t0),
        duration=float(data_end - sampler.t0),
    )


def _to_rgb(frames, short_side) -> list[np.ndarray]:
    """Decoded frames -> RGB arrays; a frame held over several grid times is converted once."""
    arrays: dict[int, np.ndarray] = {}
    for frame in frames:
        if id(frame) not in arrays:
            height, width = resized_shape(frame.height, frame.width, short_side)
            arrays[id(frame)] = frame.to_ndarray(
                width=width, height=height, format="rgb24", interpolation="BILINEAR"
            )
    return [arrays[id(frame)] for frame in frames]


def _declared_end(container, stream, fps: Fraction) -> Fraction | None:
    """The timestamp (seconds) at which the container says the video ends; None if it does not.

    AVI's header counts frames (dropped ones included), MP4 its samples; Matroska writes a
    per-track DURATION tag (an end timestamp). A container-wide duration is used only for a
    file with no other stream, as audio may outlast the video.
    """
    start = stream.start_time * stream.time_base if stream.start_time is not None else 0
    if stream.frames:
        return start + stream.frames / fps
    if stream.duration:
        return start + stream.duration * stream.time_base
    match = _MKV_DURATION.match(stream.metadata.get("DURATION", ""))
    if match:
        hours, minutes, seconds = match.groups()
        return Fraction(int(hours) * 3600 + int(minutes) * 60) + Fraction(seconds)
    if container.duration and len(container.streams) == 1:
        # Containers differ on whether it counts from 0 or from the start: take the earlier
        # end, so a playable file is never called truncated.
        return Fraction(container.duration, 1_000_000)
    return None


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    """RGB uint8 [H, W, 3] -> JPEG bytes (what tf.io.decode_jpeg reads back)."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
