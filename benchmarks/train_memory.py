"""Peak memory of one Swin-T training step, with and without per-block recomputation.

    python -m benchmarks.train_memory [--quick]

Each configuration runs in a fresh process (peak RSS never goes down, so processes must not be
shared). A child builds the model and the AdamW slots, resets the peak-RSS mark (VmHWM), runs one
compiled training step (forward + backward + AdamW) at batch 1, 16x224x224, and reports the growth
of the peak RSS: the step's activations, gradients and temporaries. CPU only, so RSS is the
honest measure here. Writes benchmarks/results/train_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def status_mib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (peak resident) of this process, from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0), so the peak
    # measured next is the step's own, not tracing's or model building's.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def child(shape: tuple[int, ...], recompute: bool) -> dict:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow as tf

    from benchmarks.swin_t_step import swin_t_training

    _, clips, labels, train_step = swin_t_training(shape, 400, recompute=recompute)
    step = tf.function(train_step)
    step.get_concrete_function(clips, labels)  # trace outside the measured window
    _reset_peak()
    baseline = status_mib("VmRSS")
    start = time.perf_counter()
    loss = float(step(clips, labels))
    seconds = time.perf_counter() - start
    peak = status_mib("VmHWM")
    # The first step is measured: TF's allocator keeps freed blocks, so later steps reuse
    # memory already counted in RSS and show ~no growth. Includes Grappler's one-off work.
    return {
        "recompute": recompute,
        "rss_before_step_mib": baseline,
        "peak_rss_mib": peak,
        "step_peak_growth_mib": peak - baseline,
        "first_step_seconds": seconds,
        "loss": loss,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1x8x112x112 clips")
    parser.add_argument("--output", default=os.path.join(RESULTS, "train_memory.json"))
    parser.add_argument("--child", choices=["plain", "recompute"], help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        shape = tuple(int(s) for s in args.shape.split("x"))
        print(json.dumps(child(shape, args.child == "recompute")))
        return 0
    shape = (1, 8, 112, 112, 3) if args.quick else (1, 16, 224, 224, 3)
    env = dict(os.environ, PYTHONPATH=REPO, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    runs = {}
    for mode in ("plain", "recompute"):
        cmd = [sys.executable, "-m", "benchmarks.train_memory", "--child", mode]
        cmd += ["--shape", "x".join(map(str, shape))]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        runs[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    results = {
        "model": "swin_t, 400 classes, AdamW, tf.function training step",
        "input": "x".join(map(str, shape)) + " (N,T,H,W,C)",
        "quick": args.quick,
        "method": "one fresh process per configuration; peak RSS (VmHWM, reset just before the "
        "step) minus RSS before the first compiled training step; model, AdamW slots and the "
        "trace are built first",
        **runs,
        "recompute_saving": 1.0
        - runs["recompute"]["step_peak_growth_mib"] / runs["plain"]["step_peak_growth_mib"],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"Swin-T training step {results['input']}: peak RSS growth over the built model")
    for mode in ("plain", "recompute"):
        r = runs[mode]
        print(
            f"  {mode:<10} {r['step_peak_growth_mib']:>9.0f} MiB  ({r['first_step_seconds']:.1f} s)"
        )
    print(f"  recompute saves {100 * results['recompute_saving']:.0f}% -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
