"""Videos whose timestamps are as real collections have them: a late start, a gap, a variable
frame rate. Frame i is grey level 10 + 6 i plus grain (so that frame data, not headers, fills
the file), so every decoded frame names the source frame it came from, whatever the codec did.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

_MS = Fraction(1, 1000)
_VFR_MS = np.cumsum([0] + [20, 40, 60, 40] * 9 + [20, 40, 60])  # 40 frames, 20-60 ms apart
# name: (pts, time base, codec); 40 frames each, 64x64, 25 fps nominal.
TIMED = {
    # A clip cut from a longer recording keeps its source timestamps: it starts at 2.4 s.
    "late_start.mkv": ([2400 + 40 * i for i in range(40)], _MS, "mpeg4"),
    # Frames 20-39 dropped by the capture: a hole in the AVI index, while the header still
    # counts 60 frames (the case once reported as "truncated: 40 of 60 declared frames").
    "gap.avi": ([*range(20), *range(40, 60)], Fraction(1, 25), "mpeg4"),
    # A phone-style variable frame rate, H.264 in MP4 with its index first (faststart).
    "vfr.mp4": ([int(t) for t in _VFR_MS], _MS, "libx264"),
}


def write(path, name: str) -> None:
    pts, time_base, codec = TIMED[name]
    grain = np.random.default_rng(0).integers(-4, 5, (64, 64, 1))
    # MP4 index first, as streamed files have it: a cut file still opens.
    options = {"movflags": "faststart"} if name.endswith(".mp4") else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=25)
        stream.height = stream.width = 64
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 400_000
        stream.codec_context.time_base = time_base
        stream.codec_context.thread_count = 1  # deterministic bytes
        for i, t in enumerate(pts):
            pixels = np.clip(10 + 6 * i + grain, 0, 255).astype(np.uint8).repeat(3, axis=2)
            frame = av.VideoFrame.from_ndarray(pixels, "rgb24")
            frame.pts, frame.time_base = t, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def source_index(frame: np.ndarray) -> int:
    """Which source frame a decoded RGB frame shows."""
    return round((float(frame.mean()) - 10) / 6)


def expected_sources(path, name: str, stride: int) -> tuple[list[int], Fraction]:
    """(source frame showing at each grid time first + k * step up to the last frame, step);
    step = stride / the container's average rate (25, or 40 frames over the VFR span)."""
    pts, time_base, _ = TIMED[name]
    times = [t * time_base for t in pts]
    with av.open(str(path)) as container:
        step = stride / Fraction(container.streams.video[0].average_rate)
    sources, t = [], times[0]
    while t <= times[-1]:
        sources.append(max(i for i, s in enumerate(times) if s <= t))
        t += step
    return sources, step
