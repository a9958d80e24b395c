"""The whole pipeline on generated UCF101-shaped data, per stage: time, memory, bytes per video.

    python -m benchmarks.pipeline_stages [--scales 1 4] [--data DIR] [--work DIR] [--quick]

For each scale s, a UCF101-shaped set of 5*s clips per class (benchmarks/ucf101_like.py: 101
classes, 320x240 MPEG-4 at 25 fps, 7 s per video; s=1 is 404 train + 101 test videos) runs
through `local_runner.py` exactly as a user runs it (real-data settings, two Beam workers, the
UCF101 schema), with a tiny model: `--clip-frames 8 --image-size 112 --epochs 1`. A fresh
pipeline root and metadata store each time. While it runs, the process tree (the runner, Beam's
worker processes, every child) is sampled every 0.5 s: the peak of the summed RSS and of the
summed PSS (shared pages counted once) while each component runs is that stage's memory. Stage
times are the runner's own ("X done (..)"); the 1-minute load average is read at each stage's
start and end (the machine may be shared). After the run: bytes each component wrote under the
pipeline root, per video. Two scales give a fixed cost and a cost per video for each stage, from
which a run on UCF101's 13,320 videos is extrapolated (linearly; stated as such).

Writes benchmarks/results/pipeline_stages.json (keys below are fixed: the README's sizing table
is made from them, `--table` prints it) .
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from benchmarks import results, ucf101_like
from model import keras_env

REPO = Path(__file__).resolve().parents[1]
RESULTS = results.path("pipeline_stages")
WORK = Path("/tmp/realsize/bench")
DATA = Path("/tmp/realsize/data")
TRAINING_FLAGS = ["--clip-frames", "8", "--image-size", "112", "--epochs", "1"]
STAGES = (
    "VideoExampleGen",
    "StatisticsGen",
    "ImportSchemaGen",
    "ExampleValidator",
    "AnomaliesGate",
    "Transform",
    "LatestPushedModel",
    "Trainer",
    "Evaluator",
    "Pusher",
)
# UCF101, split 1: the size the table extrapolates to.
UCF101_VIDEOS, UCF101_TRAIN, UCF101_EVAL = 13_320, 9_537, 3_783
_LINE = re.compile(r"^\[\s*[\dms]+\] (\S+) (\.\.\.|done \((.+)\))$")
MIB = 2**20


def _duration_s(text: str) -> float:
    minutes, _, seconds = text.rpartition("m")
    return 60 * int(minutes or 0) + int(seconds.rstrip("s"))


def _tree_memory(root: psutil.Process) -> tuple[float, float]:
    """(summed RSS, summed PSS) in MiB of `root` and all its descendants."""
    rss = pss = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss / MIB, pss / MIB


class Sampler(threading.Thread):
    """Peak tree memory per stage: the stage is whatever the runner last said started."""

    def __init__(self, proc: psutil.Process, interval: float = 0.5):
        super().__init__(daemon=True)
        self._proc, self._interval = proc, interval
        self.stage = "start-up"
        self.peaks: dict[str, dict[str, float]] = {}
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                rss, pss = _tree_memory(self._proc)
            except psutil.NoSuchProcess:
                return
            peak = self.peaks.setdefault(self.stage, {"rss_mib": 0.0, "pss_mib": 0.0})
            peak["rss_mib"] = max(peak["rss_mib"], rss)
            peak["pss_mib"] = max(peak["pss_mib"], pss)
            self.done.wait(self._interval)


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def run_once(data_root: Path, work: Path, log, stop_after: str | None = None) -> dict:
    """One local_runner.py run on fresh roots; per-stage time, memory, load, bytes. With
    `stop_after`, the run is ended (SIGTERM to its process tree) once that stage is done."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    root = work / "root"
    command = [
        sys.executable,
        str(REPO / "local_runner.py"),
        "--data-root",
        str(data_root),
        "--pipeline-root",
        str(root),
        "--metadata",
        str(work / "metadata.sqlite"),
        "--serving-dir",
        str(work / "serving"),
        *TRAINING_FLAGS,
    ]
    env = keras_env.child_env(PYTHONPATH=str(REPO))
    started = time.time()
    proc = subprocess.Popen(
        command,
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    sampler = Sampler(psutil.Process(proc.pid))
    sampler.start()
    stages: dict[str, dict] = {}
    output = []
    for line in proc.stdout:
        output.append(line)
        log.write(line)
        log.flush()
        match = _LINE.match(line.strip())
        if not match:
            continue
        name, state, took = match.groups()
        if state == "...":
            sampler.stage = name
            stages[name] = {"load_1min_start": results.load_1min()}
        elif name in stages:
            stages[name] |= {"seconds": _duration_s(took), "load_1min_end": results.load_1min()}
            sampler.stage = "between stages"
            if name == stop_after:
                _terminate(psutil.Process(proc.pid))
                break
    code = proc.wait()
    sampler.done.set()
    sampler.join()
    total_s = time.time() - started
    for name, stage in stages.items():
        stage |= sampler.peaks.get(name, {})
        stage["bytes_written"] = _du(root / name)
    text = "".join(output)
    examples = _du(root / "VideoExampleGen")
    return {
        "returncode": code,
        "stopped_after": stop_after,
        "seconds": round(total_s, 1),
        "stages": stages,
        "peak_rss_mib": max(p["rss_mib"] for p in sampler.peaks.values()),
        "peak_pss_mib": max(p["pss_mib"] for p in sampler.peaks.values()),
        "examples_bytes": examples,
        "pipeline_root_bytes": _du(root),
        "pipeline_root_over_examples": round(_du(root) / max(examples, 1), 3),
        "tracebacks": text.count("Traceback (most recent call last)"),
        "exceptions_ignored": text.count("Exception ignored"),
        "summary": text[text.rfind("Pipeline ") :].splitlines()[:4] if "Pipeline " in text else [],
    }


def _terminate(root: psutil.Process) -> None:
    """SIGTERM the runner and its Beam workers, then SIGKILL what is left after 30 s."""
    procs = [root, *root.children(recursive=True)]
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    for proc in psutil.wait_procs(procs, timeout=30)[1]:
        proc.kill()


def _fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(fixed, per video) of t = fixed + per_video * n through the smallest and largest n."""
    (n0, t0), (n1, t1) = min(points), max(points)
    if n1 == n0:
        return 0.0, t1 / n1
    per = (t1 - t0) / (n1 - n0)
    if per <= 0:  # the smaller run was slowed by load more than the data grew: rate of the larger
        return 0.0, t1 / n1
    return max(t0 - per * n0, 0.0), per


def extrapolate(runs: list[dict]) -> dict:
    """Per stage: seconds on UCF101 (linear in the videos the stage reads), the largest
    memory seen, bytes per video."""
    videos_read = {
        "VideoExampleGen": lambda r: r["videos"],
        "StatisticsGen": lambda r: r["videos"],
        "Transform": lambda r: r["train_videos"],  # analyses the training split
        "Trainer": lambda r: r["videos"],  # one epoch and one evaluation pass
        "Evaluator": lambda r: r["eval_videos"],
    }
    ucf101 = {"videos": UCF101_VIDEOS, "train_videos": UCF101_TRAIN, "eval_videos": UCF101_EVAL}
    out = {}
    for stage, count in videos_read.items():
        points = [
            (count(r), r["run"]["stages"][stage]["seconds"])
            for r in runs
            if stage in r["run"]["stages"] and "seconds" in r["run"]["stages"][stage]
        ]
        if not points:
            continue
        fixed, per_video = _fit(points)
        measured = [r for r in runs if stage in r["run"]["stages"]]  # a stopped run lacks some
        biggest = max(measured, key=lambda r: r["videos"])
        largest = biggest["run"]["stages"][stage]
        out[stage] = {
            "fixed_s": round(fixed, 1),
            "s_per_video": round(per_video, 4),
            "ucf101_minutes": round((fixed + per_video * count(ucf101)) / 60, 1),
            "pss_mib": round(max(r["run"]["stages"][stage].get("pss_mib", 0) for r in measured)),
            "bytes_per_video": round(largest["bytes_written"] / biggest["videos"]),
        }
    return out


def table(result: dict) -> str:
    """The README's sizing table (markdown) from the JSON."""
    runs = result["runs"]
    header = "| stage | " + " | ".join(
        f"{r['videos']} videos"
        + (f" (through {r['run']['stopped_after']})" if r["run"].get("stopped_after") else "")
        + ": time, PSS"
        for r in runs
    )
    header += " | bytes written per video | UCF101 (13,320 videos), extrapolated |"
    lines = [header, "|---" * (3 + len(runs)) + "|"]
    for stage in ("VideoExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator"):
        cells = []
        for r in runs:
            s = r["run"]["stages"].get(stage)
            cells.append(f"{s['seconds']} s, {s['pss_mib'] / 1024:.2f} GiB" if s else "not run")
        e = result["ucf101"].get(stage, {})
        lines.append(
            f"| {stage} | "
            + " | ".join(cells)
            + f" | {e.get('bytes_per_video', 0) / 1e6:.2f} MB | ~{e.get('ucf101_minutes', '?')} min,"
            f" {e.get('bytes_per_video', 0) * UCF101_VIDEOS / 1e9:.1f} GB |"
        )
    peaks = " | ".join(
        f"{r['run']['peak_pss_mib'] / 1024:.2f} GiB PSS ({r['run']['peak_rss_mib'] / 1024:.2f} GiB "
        f"summed RSS)"
        for r in runs
    )
    lines.append(f"| whole run, peak | {peaks} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--data", type=Path, default=DATA, help="generated data sets (kept)")
    parser.add_argument("--work", type=Path, default=WORK, help="pipeline roots and logs")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="1 clip per class: a smoke run")
    parser.add_argument("--table", action="store_true", help="print the table of --results")
    parser.add_argument(
        "--stop-after",
        metavar="STAGE",
        help="end each run once STAGE is done, e.g. Transform: the Beam stages only, whose "
        "memory is what could grow with the data (the Trainer and Evaluator stream tf.data)",
    )
    parser.add_argument(
        "--add-to",
        type=Path,
        help="a results JSON whose runs are kept beside these (e.g. a whole run at 1x)",
    )
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.results.read_text())))
        return 0
    runs = []
    for scale in [1] if args.quick else args.scales:
        clips = 1 if args.quick else 5 * scale
        data_root = ucf101_like.generate(args.data / f"{clips}-per-class", clips)
        listing = ucf101_like.video_sets.list_videos(str(data_root), 1)
        log_path = args.work / f"run-{clips}-per-class.log"
        print(f"== {len(listing.records)} videos: {data_root}; log {log_path}", flush=True)
        args.work.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
            run = run_once(data_root, args.work / f"run-{clips}-per-class", log, args.stop_after)
        runs.append(
            {
                "scale": scale,
                "clips_per_class": clips,
                "videos": len(listing.records),
                "train_videos": len(listing.split("train")),
                "eval_videos": len(listing.split("eval")),
                "data_bytes": sum(f.stat().st_size for f in data_root.rglob("*.avi")),
                "run": run,
            }
        )
        print(json.dumps(run, indent=1), flush=True)
    if args.add_to:
        runs = json.loads(args.add_to.read_text())["runs"] + runs
    result = {"training_flags": TRAINING_FLAGS, "runs": runs, "ucf101": extrapolate(runs)}
    results.write("pipeline_stages", result, args.results)
    print(table(result))
    print(f"-> {args.results}")
    return 0


if __name__ == "__main__":
    from benchmarks import pipeline_stages  # pool workers unpickle benchmarks.*, not __main__.*

    sys.exit(pipeline_stages.main())
