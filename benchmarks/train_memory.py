"""Peak memory of the Swin-T training process: this TF model against torchvision, same recipe.

    python -m benchmarks.train_memory [--quick] [--shape 1x32x224x224] [--rounds 2] [--steps 3]
        [--threads N]

Each configuration runs in its own fresh process (peak RSS never goes down, so processes must
not be shared), alternated tf / torch / tf_recompute per round:
- tf: the Trainer's model and compiled training step (benchmarks/swin_t_step.py, "trainer");
- torch: torchvision's swin3d_t with the same recipe (two AdamW groups, warm-up cosine, label
  smoothing, global-norm clipping), uint8 clips normalised in the step as the Trainer does;
- tf_recompute: the Trainer's step with TrainOptions(recompute=True).
A child reads VmRSS/VmHWM from /proc after importing its framework and after building the model
and its optimizers, then runs `--steps` training steps, resetting the peak mark (VmHWM, via
/proc/self/clear_refs) before each. Reported: the whole process's peak RSS (what a machine must
hold) and each step's growth over the RSS before it (the first TF step includes Grappler's
one-off work; later steps reuse memory the allocator kept). CPU only: RSS is the honest measure
here. Writes benchmarks/results/train_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks import results
from model import keras_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ("tf", "torch", "tf_recompute")
NUM_CLASSES = 400
RESULT_PREFIX = "RESULT "


def status_mib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (peak resident) of this process, from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    """Resets VmHWM to the current RSS (Linux >= 4.0: writing 5 to clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _build_tf(shape, threads: int, recompute: bool):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    imported = status_mib("VmRSS")
    from benchmarks.swin_t_step import tf_train_step

    return imported, tf_train_step("trainer", shape, NUM_CLASSES, recompute=recompute)


def _build_torch(shape, threads: int):
    import torch
    from torchvision.models.video import swin3d_t

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)
    imported = status_mib("VmRSS")
    from benchmarks.swin_t_step import torch_train_step

    torch.manual_seed(0)
    model = swin3d_t(num_classes=NUM_CLASSES)
    return imported, torch_train_step("trainer", model, torch.zeros(shape[0], 3, *shape[1:4]))


def child(config: str, shape: tuple[int, ...], threads: int, steps: int) -> dict:
    if config == "torch":
        imported, step = _build_torch(shape, threads)
        assert "tensorflow" not in sys.modules, "the torch process must not import TensorFlow"
    else:
        imported, step = _build_tf(shape, threads, recompute=config == "tf_recompute")
        assert "torch" not in sys.modules, "the TensorFlow process must not import torch"
    built, peak = status_mib("VmRSS"), status_mib("VmHWM")
    runs = []
    for _ in range(steps):
        before = status_mib("VmRSS")
        reset_peak()
        cpu, start = time.process_time(), time.perf_counter()
        step()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        step_peak = status_mib("VmHWM")
        peak = max(peak, step_peak)
        runs.append(
            {
                "rss_before_mib": before,
                "peak_rss_mib": step_peak,
                "growth_mib": step_peak - before,
                "wall_s": wall,
                "cpu_s": cpu,
                "load_1min": results.load_1min(),
            }
        )
        print(
            f"  {config} step {len(runs)}: peak {step_peak:.0f} MiB (+{step_peak - before:.0f} "
            f"over {before:.0f}), {wall:.1f} s wall, {cpu:.1f} s CPU",
            flush=True,
        )
    return {
        "rss_imported_mib": imported,
        "rss_built_mib": built,
        "peak_rss_mib": peak,
        "first_step_growth_mib": runs[0]["growth_mib"],
        "later_step_growth_mib": max((r["growth_mib"] for r in runs[1:]), default=None),
        "steps": runs,
    }


def _run_child(config: str, args) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.train_memory", "--child", config]
    cmd += ["--shape", args.shape, "--threads", str(args.threads), "--steps", str(args.steps)]
    env = keras_env.child_env(PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    env["OMP_NUM_THREADS"] = str(args.threads)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    result = None
    for line in proc.stdout:
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
        else:
            print(line, end="", flush=True)
    if proc.wait() != 0 or result is None:
        raise RuntimeError(f"{config} memory benchmark process failed (exit {proc.returncode})")
    return result


def summarise(rounds: list[dict]) -> dict:
    """Per configuration: medians over rounds (memory hardly varies between fresh processes)."""
    out = {}
    for config in CONFIGS:
        runs = [rd[config] for rd in rounds]

        def median(key, runs=runs):
            values = [r[key] for r in runs if r[key] is not None]
            return statistics.median(values) if values else None

        out[config] = {
            "peak_rss_mib": median("peak_rss_mib"),
            "peak_rss_mib_range": [
                min(r["peak_rss_mib"] for r in runs),
                max(r["peak_rss_mib"] for r in runs),
            ],
            "rss_imported_mib": median("rss_imported_mib"),
            "rss_built_mib": median("rss_built_mib"),
            "first_step_growth_mib": median("first_step_growth_mib"),
            "later_step_growth_mib": median("later_step_growth_mib"),
        }
    tf_peak, torch_peak = out["tf"]["peak_rss_mib"], out["torch"]["peak_rss_mib"]
    out["peak_ratio_tf_over_torch"] = tf_peak / torch_peak
    out["peak_ratio_tf_recompute_over_torch"] = out["tf_recompute"]["peak_rss_mib"] / torch_peak
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1x8x112x112, 1 round, 2 steps")
    parser.add_argument("--shape", default="1x32x224x224", help="N x T x H x W")
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per configuration")
    parser.add_argument("--steps", type=int, default=3, help="training steps per process")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--output", default=str(results.path("train_memory")))
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.shape, args.rounds, args.steps = "1x8x112x112", 1, 2
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step includes one-off work)")
    shape = (*(int(s) for s in args.shape.split("x")), 3)
    if args.child:
        print(RESULT_PREFIX + json.dumps(child(args.child, shape, args.threads, args.steps)))
        return 0

    rounds = []
    for i in range(args.rounds):
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(f"round {i + 1}/{args.rounds} ({started})", flush=True)
        rounds.append({c: _run_child(c, args) for c in CONFIGS} | {"started": started})
    summary = summarise(rounds)
    record = {
        "model": f"swin_t, {NUM_CLASSES} classes, random weights",
        "input": "x".join(map(str, shape)) + " (N,T,H,W,C)",
        "shape": list(shape),
        "training_step": "the Trainer's recipe (benchmarks/swin_t_step.py 'trainer') in both",
        "method": "one fresh process per configuration and round, alternated tf/torch/"
        f"tf_recompute; {args.threads} intra-op and inter-op threads; {args.steps} steps each; "
        "peak RSS = VmHWM of the whole process; growth = a step's VmHWM (reset just before it) "
        "minus VmRSS before it",
        "summary": summary,
        "rounds": rounds,
    }
    results.write("train_memory", record, args.output)
    print(f"Swin-T training process {record['input']}, {args.rounds} round(s) (median MiB)")
    print(f"{'config':<14}{'peak RSS':>10}{'built':>8}{'1st step +':>12}{'later +':>9}")
    for config in CONFIGS:
        s = summary[config]
        later = s["later_step_growth_mib"]
        print(
            f"{config:<14}{s['peak_rss_mib']:>10.0f}{s['rss_built_mib']:>8.0f}"
            f"{s['first_step_growth_mib']:>12.0f}{later:>9.0f}"
        )
    print(
        f"peak TF/torch {summary['peak_ratio_tf_over_torch']:.2f}, with recompute "
        f"{summary['peak_ratio_tf_recompute_over_torch']:.2f} -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
