"""The embedded default data set: small real .avi videos in UCF101's exact layout.

Every clip shows one bright square on a flat dark background. Classes differ only in how the
square changes over time (direction of motion, or rhythm of pulsing); square size, position and
colours are drawn from the same ranges for every class, so any single frame is ambiguous: a model
that beats chance has used the temporal path. A group (gXX) is one "scene" (background and square
colour) shared by every class, so a scene says nothing about the class; its clips (cYY) vary
position, speed and phase, as UCF101's groups share actor and scene.

Why flat and bright: on a textured background with random colours a tiny Video Swin trained from
scratch on the CPU stayed at chance; with this contrast it learns the motion in minutes. A
horizontal flip turns ShiftLeft into ShiftRight: train on this set without flips.

    python -m data.synthetic --output generated/synthetic --seed 0
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import av
import numpy as np


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """The size of the embedded data set: the one place it is defined."""

    classes: tuple[str, ...] = (
        "ShiftLeft",
        "ShiftRight",
        "ShiftUp",
        "ShiftDown",
        "PulseSlow",
        "PulseFast",
    )
    groups: int = 6  # official-style splits: split k tests groups 2k-1 and 2k
    clips_per_group: int = 20
    num_frames: int = 40
    height: int = 64
    width: int = 64
    fps: int = 25

    @property
    def num_videos(self) -> int:
        return len(self.classes) * self.groups * self.clips_per_group

    def test_groups(self, split: int) -> tuple[int, ...]:
        per_split = self.groups // 3
        return tuple(range((split - 1) * per_split + 1, split * per_split + 1))


SPEC = SyntheticSpec()
_SIZE = (10, 22)  # square side in pixels, for every class
_PULSE_PERIODS = {"PulseSlow": 20.0, "PulseFast": 8.0}  # frames
_DIRECTIONS = {"ShiftLeft": (0, -1), "ShiftRight": (0, 1), "ShiftUp": (-1, 0), "ShiftDown": (1, 0)}


def render_scene(scene_seed, spec: SyntheticSpec = SPEC) -> tuple[np.ndarray, np.ndarray]:
    """A group's (background [H, W, 3], square colour [3]), both uint8: dark and flat, bright."""
    rng = np.random.default_rng(scene_seed)
    background = np.empty((spec.height, spec.width, 3), np.uint8)
    background[:] = rng.integers(0, 70, size=3)
    return background, rng.integers(170, 256, size=3).astype(np.uint8)


def render_clip(class_name: str, scene_seed, clip_seed, spec: SyntheticSpec = SPEC) -> np.ndarray:
    """[T, H, W, 3] uint8 frames of one clip of `class_name` in the scene `scene_seed`."""
    h, w, t = spec.height, spec.width, spec.num_frames
    background, color = render_scene(scene_seed, spec)
    clip = np.random.default_rng(clip_seed)
    y0, x0 = clip.uniform(0, h), clip.uniform(0, w)
    side, speed, phase = clip.integers(*_SIZE), clip.uniform(1.5, 2.5), clip.uniform(0, 2 * np.pi)
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        if class_name in _DIRECTIONS:
            dy, dx = _DIRECTIONS[class_name]
            y, x, s = y0 + dy * speed * i, x0 + dx * speed * i, side
        else:
            wave = 0.5 + 0.5 * np.sin(2 * np.pi * i / _PULSE_PERIODS[class_name] + phase)
            s = _SIZE[0] + wave * (_SIZE[1] - _SIZE[0])
            y, x = y0 - s / 2, x0 - s / 2  # grows and shrinks about a fixed centre
        frames[i] = background
        rows = np.arange(int(y), int(y) + int(s)) % h  # wraps around: positions stay uniform
        cols = np.arange(int(x), int(x) + int(s)) % w
        frames[i][np.ix_(rows, cols)] = color
    return frames


def write_video(path, frames: np.ndarray, fps: int, codec: str = "mpeg4") -> None:
    """Encodes RGB frames; the container follows the file name. The default, MPEG-4 Part 2 in
    AVI, is what UCF101's XviD files are."""
    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 400_000
        stream.codec_context.thread_count = 1  # deterministic bytes
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())


def generate(output: str | os.PathLike, seed: int = 0, spec: SyntheticSpec = SPEC) -> Path:
    """Writes `output`/UCF-101/<Class>/v_<Class>_gXX_cYY.avi and `output`/ucfTrainTestlist/."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=output.parent))
    lists = work / "ucfTrainTestlist"
    lists.mkdir()
    listed = []
    for label, class_name in enumerate(spec.classes):
        (work / "UCF-101" / class_name).mkdir(parents=True)
        for g in range(1, spec.groups + 1):
            for c in range(1, spec.clips_per_group + 1):
                frames = render_clip(class_name, [seed, g], [seed, label, g, c], spec)
                name = f"{class_name}/v_{class_name}_g{g:02d}_c{c:02d}.avi"
                write_video(work / "UCF-101" / name, frames, spec.fps)
                listed.append((name, label + 1, g))
    write_lines(lists / "classInd.txt", [f"{i + 1} {c}" for i, c in enumerate(spec.classes)])
    for split in (1, 2, 3):
        test = spec.test_groups(split)
        train = [f"{n} {label}" for n, label, g in listed if g not in test]
        write_lines(lists / f"trainlist0{split}.txt", train)
        write_lines(lists / f"testlist0{split}.txt", [n for n, _, g in listed if g in test])
    if output.exists():
        shutil.rmtree(output)
    work.rename(output)  # atomic: a half-written set is never mistaken for a whole one
    return output


def ensure(output: str | os.PathLike, seed: int = 0, spec: SyntheticSpec = SPEC) -> Path:
    """The data set at `output`, generated first if it is not there yet."""
    output = Path(output)
    if not (output / "ucfTrainTestlist" / "testlist03.txt").exists():
        generate(output, seed, spec)
    return output


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\r\n" for line in lines))  # CRLF, as UCF101 ships them


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="directory to (re)create")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = generate(args.output, args.seed)
    print(f"wrote {SPEC.num_videos} videos ({len(SPEC.classes)} classes) under {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
