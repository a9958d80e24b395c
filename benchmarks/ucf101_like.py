"""A generated UCF101-shaped data set: the real-size input of benchmarks/pipeline_stages.py.

    python -m benchmarks.ucf101_like --output /tmp/realsize/data/1x [--clips-per-class 5]

UCF101's shape without its footage: the 101 official classes (pipeline/schema/ucf101/classInd.txt),
its layout (`UCF-101/<Class>/v_<Class>_gXX_cYY.avi`, `ucfTrainTestlist/` with classInd and the
three splits' train/test lists, CRLF), 320x240 MPEG-4 Part 2 in AVI (UCF101's XviD) at 25 fps,
6-8 s per video (UCF101: 7.2 s on average), about 450 kB per file. Of every 5 clips of a class,
one is in a test group of split 1 (groups 1-7, as in UCF101) and four in training groups: 5 clips
per class give the 404 + 101 videos of the real-size benchmark, 20 clips 4x that.

Content is camera-like, so decoding, JPEG and storage cost what they cost on real footage: a
smooth texture the camera pans over, a few moving discs (colours and motion per class) and fine
grain, through the MPEG-4 encoder at 500 kbit/s. Calibrated against the examples of real UCF101
footage (1.46 MB per example at the default IngestOptions, 90 frames of ~16 kB): these give
about 1.5 MB (88 JPEG frames of ~17 kB, measured: see the README's sizing table).
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import zlib
from pathlib import Path

import av
import numpy as np
from PIL import Image

from data import synthetic, video_sets
from pipeline import configs

HEIGHT, WIDTH, FPS = 240, 320, 25
SECONDS = (6.0, 8.0)  # uniform: 7 s on average
BIT_RATE = 500_000
TEXTURE_SCALE = 16  # texture cell size in pixels: how smooth the scene is
GRAIN = 2  # +- levels of per-pixel noise (sensor grain)
DISCS = 3
TEST_EVERY = 5  # one clip in 5 is in a test group
TEST_GROUPS = {1: range(1, 8), 2: range(8, 15), 3: range(15, 22)}  # UCF101's splits


def render(class_index: int, clip_seed: int, frames: int) -> np.ndarray:
    """uint8 [frames, 240, 320, 3]: a panned texture, moving discs of the class, grain."""
    rng = np.random.default_rng([class_index, clip_seed])
    style = np.random.default_rng(class_index)  # what every clip of a class shares
    colours = style.integers(0, 256, (DISCS, 3))
    velocity = style.normal(0, 2.0, (DISCS, 2))
    margin = 40
    cells = rng.integers(
        0, 256, (HEIGHT // TEXTURE_SCALE + margin, WIDTH // TEXTURE_SCALE + margin, 3)
    )
    texture = Image.fromarray(cells.astype(np.uint8)).resize(
        (cells.shape[1] * TEXTURE_SCALE, cells.shape[0] * TEXTURE_SCALE), Image.BICUBIC
    )
    scene = np.asarray(texture).astype(np.int16)
    pan = rng.uniform(0.15, 0.6, 2) * rng.choice([-1, 1], 2)  # pixels per frame
    y0, x0 = (scene.shape[0] - HEIGHT) // 2, (scene.shape[1] - WIDTH) // 2
    centres = rng.uniform((0, 0), (HEIGHT, WIDTH), (DISCS, 2))
    radii = rng.uniform(15, 40, DISCS)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    out = np.empty((frames, HEIGHT, WIDTH, 3), np.uint8)
    for i in range(frames):
        y = int(np.clip(y0 + pan[0] * i, 0, scene.shape[0] - HEIGHT))
        x = int(np.clip(x0 + pan[1] * i, 0, scene.shape[1] - WIDTH))
        frame = scene[y : y + HEIGHT, x : x + WIDTH].copy()
        for d in range(DISCS):
            cy, cx = (centres[d] + velocity[d] * i) % (HEIGHT, WIDTH)
            frame[(yy - cy) ** 2 + (xx - cx) ** 2 < radii[d] ** 2] = colours[d]
        frame += rng.integers(-GRAIN, GRAIN + 1, (HEIGHT, WIDTH, 1), dtype=np.int16)
        out[i] = np.clip(frame, 0, 255)
    return out


def layout(class_names: tuple[str, ...], clips_per_class: int) -> list[tuple[str, int, int]]:
    """[(relative path, 1-based label, group)]: clip i of a class is in a test group of split 1
    when i % 5 == 0 (groups 1-7 in turn), else in a training group (8-25 in turn)."""
    listed = []
    for label, name in enumerate(class_names, 1):
        tests = trains = 0
        for i in range(clips_per_class):
            if i % TEST_EVERY == 0:
                group, clip = 1 + tests % 7, 1 + tests // 7
                tests += 1
            else:
                group, clip = 8 + trains % 18, 1 + trains // 18
                trains += 1
            listed.append((f"{name}/v_{name}_g{group:02d}_c{clip:02d}.avi", label, group))
    return listed


def _write(job: tuple[str, int, int]) -> None:
    path, class_index, seed = job
    seconds = np.random.default_rng([class_index, seed, 1]).uniform(*SECONDS)
    frames = render(class_index, seed, int(round(seconds * FPS)))
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.height, stream.width = HEIGHT, WIDTH
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = BIT_RATE
        stream.codec_context.thread_count = 1  # deterministic bytes
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())


def generate(output: str | Path, clips_per_class: int = 5, processes: int = 2) -> Path:
    """Writes `output`/UCF-101/ and `output`/ucfTrainTestlist/ (kept if already complete)."""
    output = Path(output)
    marker = output / f".complete-{clips_per_class}"
    if marker.exists():
        return output
    shutil.rmtree(output, ignore_errors=True)
    class_names = video_sets.read_class_index(configs.UCF101_CLASS_INDEX)
    listed = layout(class_names, clips_per_class)
    jobs = []
    for rel, label, _ in listed:
        (output / video_sets.VIDEOS_DIR / rel).parent.mkdir(parents=True, exist_ok=True)
        jobs.append(
            (str(output / video_sets.VIDEOS_DIR / rel), label - 1, zlib.crc32(rel.encode()))
        )
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_write, jobs, chunksize=4)
    lists = output / video_sets.LISTS_DIR
    lists.mkdir()
    shutil.copy(configs.UCF101_CLASS_INDEX, lists / "classInd.txt")
    for split, groups in TEST_GROUPS.items():
        train = [f"{rel} {label}" for rel, label, g in listed if g not in groups]
        test = [rel for rel, _, g in listed if g in groups]
        synthetic.write_lines(lists / f"trainlist0{split}.txt", train)
        synthetic.write_lines(lists / f"testlist0{split}.txt", test)
    marker.touch()
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="directory to (re)create")
    parser.add_argument("--clips-per-class", type=int, default=5, help="5: 404 train + 101 test")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    path = generate(args.output, args.clips_per_class, args.processes)
    listing = video_sets.list_videos(str(path), 1)
    print(
        f"{len(listing.records)} videos (train {len(listing.split('train'))}, eval "
        f"{len(listing.split('eval'))}) under {path}"
    )
    return 0


if __name__ == "__main__":
    from benchmarks import ucf101_like  # pool workers unpickle benchmarks.*, not __main__.*

    raise SystemExit(ucf101_like.main())
