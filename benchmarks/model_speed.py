"""Swin-T speed on the CPU: this TF model against torchvision, each in its own fresh process.

    python -m benchmarks.model_speed [--quick] [--shape 1x32x224x224] [--rounds 2]
        [--repeats 3] [--threads N] [--config trainer|adamw] [--xla-forward]

One training step (forward + backward + optimizer; by default the Trainer's configuration, see
benchmarks/swin_t_step.py), then the forward (inference, `tf.function` / `torch.no_grad`), on
random weights and clips; the peak RSS of each process after its training steps (before any
forward) is its training memory (benchmarks/train_memory.py breaks it down). Fair by
construction:
- each framework runs in its own fresh process (their thread pools never compete, and neither
  inherits the other's allocator or caches), the processes alternated A/B/A/B over `--rounds`;
- the same thread count in both: TF's intra- and inter-op pools and torch's intra- and inter-op
  threads (and OMP_NUM_THREADS) are all set to `--threads`;
- every timed run is printed with its CPU seconds and the 1-minute load average, so a run slowed
  by other work on the machine shows; medians and per-round ratios are reported.
Writes benchmarks/results/model_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from benchmarks import results
from benchmarks.train_memory import status_mib
from model import keras_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 400
RESULT_PREFIX = "RESULT "


def _time(framework: str, name: str, fn, repeats: int) -> dict:
    """Warm-up call, then `repeats` timed calls, each printed: wall s, process CPU s, load."""
    start = time.perf_counter()
    fn()  # tracing, graph optimisation, allocator growth
    first = time.perf_counter() - start
    print(f"  {framework} {name}: first call {first:.1f} s", flush=True)
    runs = []
    for i in range(repeats):
        cpu, start = time.process_time(), time.perf_counter()
        fn()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        load = results.load_1min()
        runs.append({"wall_s": wall, "cpu_s": cpu, "load_1min": load})
        print(
            f"  {framework} {name} run {i + 1}: {wall:.3f} s wall, {cpu:.2f} s CPU, load {load:.2f}",
            flush=True,
        )
    return {"first_call_s": first, "runs": runs}


def _tf_forward(shape, repeats: int, xla_forward: bool) -> dict:
    import numpy as np
    import tensorflow as tf

    from model.video_swin import build_classifier

    model = build_classifier("swin_t", NUM_CLASSES, shape[1:])
    clips = tf.constant(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    forward = tf.function(lambda x: model(x, training=False))
    out = {"forward": _time("tf", "forward", lambda: forward(clips).numpy(), repeats)}
    if xla_forward:
        xla = tf.function(lambda x: model(x, training=False), jit_compile=True)
        out["xla_forward"] = _time("tf", "xla_forward", lambda: xla(clips).numpy(), repeats)
    return out


def child_tf(shape, threads: int, repeats: int, config: str, xla_forward: bool) -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from benchmarks.swin_t_step import tf_train_step

    # Training first: the process's peak RSS then is the training process's (no forward model).
    out = {
        "train_step": _time("tf", "train_step", tf_train_step(config, shape, NUM_CLASSES), repeats)
    }
    out["train_peak_rss_mib"] = status_mib("VmHWM")
    out.update(_tf_forward(shape, repeats, xla_forward))
    out["version"] = tf.__version__
    assert "torch" not in sys.modules, "the TensorFlow process must not import torch"
    return out


def child_torch(shape, threads: int, repeats: int, config: str) -> dict:
    import torch
    from torchvision.models.video import swin3d_t

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)
    from benchmarks.swin_t_step import torch_train_step

    torch.manual_seed(0)
    model = swin3d_t(num_classes=NUM_CLASSES)
    clips = torch.randn(shape[0], shape[4], *shape[1:4])

    def forward():
        model.eval()
        with torch.no_grad():
            model(clips)

    out = {
        "train_step": _time("torch", "train_step", torch_train_step(config, model, clips), repeats)
    }
    out["train_peak_rss_mib"] = status_mib("VmHWM")
    out["forward"] = _time("torch", "forward", forward, repeats)
    out["version"] = torch.__version__
    # TF's thread pools and OpenMP runtime beside torch's slowed torch several-fold here.
    assert "tensorflow" not in sys.modules, "the torch process must not import TensorFlow"
    return out


def _run_child(framework: str, args) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.model_speed", "--child", framework]
    cmd += ["--shape", args.shape, "--threads", str(args.threads), "--repeats", str(args.repeats)]
    cmd += ["--config", args.config] + (["--xla-forward"] if args.xla_forward else [])
    env = keras_env.child_env(PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    env["OMP_NUM_THREADS"] = str(args.threads)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    result = None
    for line in proc.stdout:  # stream every run as it happens
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
        else:
            print(line, end="", flush=True)
    if proc.wait() != 0 or result is None:
        raise RuntimeError(f"{framework} benchmark process failed (exit {proc.returncode})")
    return result


def _git_state() -> str:
    """The commit measured, with '+changes' when model/ or benchmarks/ differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "model", "benchmarks"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown (no git)"
    return (head or "unknown") + ("+changes" if dirty else "")


def _median(runs: list[dict], key: str = "wall_s") -> float:
    return statistics.median(r[key] for r in runs)


def summarise(rounds: list[dict]) -> dict:
    """Medians over every run of every round, and TF/torch per round (neighbouring processes)."""
    out = {}
    for name in ("forward", "xla_forward", "train_step"):
        if name not in rounds[0]["tf"]:
            continue
        tf_runs = [r for rd in rounds for r in rd["tf"][name]["runs"]]
        torch_name = "forward" if name == "xla_forward" else name
        torch_runs = [r for rd in rounds for r in rd["torch"][torch_name]["runs"]]
        per_round = [
            _median(rd["tf"][name]["runs"]) / _median(rd["torch"][torch_name]["runs"])
            for rd in rounds
        ]
        out[name] = {
            "tf_median_s": _median(tf_runs),
            "torch_median_s": _median(torch_runs),
            "ratio_tf_over_torch": _median(tf_runs) / _median(torch_runs),
            "ratio_per_round": per_round,
            # CPU seconds of all threads: steadier than wall time while others load the machine
            # (wall time then measures the CPU share each process got), though threads spinning
            # while they wait count as CPU too.
            "tf_cpu_median_s": _median(tf_runs, "cpu_s"),
            "torch_cpu_median_s": _median(torch_runs, "cpu_s"),
            "cpu_ratio_tf_over_torch": _median(tf_runs, "cpu_s") / _median(torch_runs, "cpu_s"),
            "load_1min_range": [
                min(r["load_1min"] for r in tf_runs + torch_runs),
                max(r["load_1min"] for r in tf_runs + torch_runs),
            ],
        }
    # Peak RSS of each training process (VmHWM after its training steps, before any forward).
    tf_peak = statistics.median(rd["tf"]["train_peak_rss_mib"] for rd in rounds)
    torch_peak = statistics.median(rd["torch"]["train_peak_rss_mib"] for rd in rounds)
    out["train_step"] |= {
        "tf_peak_rss_mib": tf_peak,
        "torch_peak_rss_mib": torch_peak,
        "peak_rss_ratio_tf_over_torch": tf_peak / torch_peak,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1x8x112x112, 1 round, 1 repeat")
    parser.add_argument("--shape", default="1x32x224x224", help="N x T x H x W")
    parser.add_argument("--rounds", type=int, default=2, help="A/B pairs of fresh processes")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--config", default=None, help="training step: trainer or adamw")
    parser.add_argument("--xla-forward", action="store_true", help="also TF's XLA forward")
    parser.add_argument("--output", default=str(results.path("model_speed")))
    parser.add_argument("--child", choices=["tf", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from benchmarks.swin_t_step import CONFIGS, DEFAULT_CONFIG

    args.config = args.config or DEFAULT_CONFIG
    if args.config not in CONFIGS:
        parser.error(f"--config must be one of {CONFIGS}")
    if args.quick:
        args.shape, args.rounds, args.repeats = "1x8x112x112", 1, 1
    shape = (*(int(s) for s in args.shape.split("x")), 3)
    if args.child == "tf":
        result = child_tf(shape, args.threads, args.repeats, args.config, args.xla_forward)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0
    if args.child == "torch":
        result = child_torch(shape, args.threads, args.repeats, args.config)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    rounds = []
    for i in range(args.rounds):
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(f"round {i + 1}/{args.rounds} ({started})", flush=True)
        rounds.append({fw: _run_child(fw, args) for fw in ("tf", "torch")} | {"started": started})
    summary = summarise(rounds)
    summary_record = {
        "model": f"swin_t (28.2M parameters), {NUM_CLASSES} classes, random weights",
        "input": "x".join(map(str, shape)) + " (N,T,H,W,C)",
        "shape": list(shape),
        "training_step": args.config,
        "method": "each framework in its own fresh process, alternated tf/torch per round; "
        f"{args.threads} intra-op and inter-op threads in both; medians of wall time over all "
        "timed runs after one warm-up call per process; training steps first, then the "
        "forward; peak RSS = the process's VmHWM after its training steps",
        "code": _git_state(),
        "software": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "tensorflow": rounds[0]["tf"]["version"],
            "torch": rounds[0]["torch"]["version"],
        },
        "summary": summary,
        "rounds": rounds,
    }
    results.write("model_speed", summary_record, args.output)
    print(
        f"Swin-T {summary_record['input']}, {args.threads} threads each, {args.rounds} round(s), "
        f"training step: {args.config} (median wall seconds)"
    )
    print(
        f"{'measurement':<14}{'TF':>9}{'torch':>9}{'TF/torch':>10}  {'per round':<14}"
        f"{'CPU s TF':>9}{'torch':>9}{'ratio':>7}  load"
    )
    for name, s in summary.items():
        rounds_text = " ".join(f"{r:.2f}" for r in s["ratio_per_round"])
        load = "{:.1f}-{:.1f}".format(*s["load_1min_range"])
        print(
            f"{name:<14}{s['tf_median_s']:>9.3f}{s['torch_median_s']:>9.3f}"
            f"{s['ratio_tf_over_torch']:>10.2f}  {rounds_text:<14}{s['tf_cpu_median_s']:>9.2f}"
            f"{s['torch_cpu_median_s']:>9.2f}{s['cpu_ratio_tf_over_torch']:>7.2f}  {load}"
        )
    step = summary["train_step"]
    print(
        f"peak RSS of the training process: TF {step['tf_peak_rss_mib']:.0f} MiB, torch "
        f"{step['torch_peak_rss_mib']:.0f} MiB ({step['peak_rss_ratio_tf_over_torch']:.2f}x)"
    )
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
