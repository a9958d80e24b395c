"""Swin-T speed: this TF model (eager, tf.function, tf.function+XLA) vs torchvision on CPU.

    python -m benchmarks.model_speed [--quick]

Forward (inference) and one training step (forward + backward + AdamW) at 1x3x32x224x224, median
of several runs after a warm-up; writes benchmarks/results/model_speed.json and prints a table.
Timings are only comparable on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _time(name: str, fn, repeats: int) -> dict:
    start = time.perf_counter()
    fn()  # warm-up: tracing, XLA compilation, allocator growth
    warmup = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"  {name}: {median:.3f} s (first call {warmup:.1f} s)", flush=True)
    return {"median_s": median, "times_s": times, "first_call_s": warmup}


def bench_tf(shape, num_classes: int, repeats: int, train_repeats: int, xla_train: bool) -> dict:
    import tensorflow as tf

    from benchmarks.swin_t_step import swin_t_training

    model, clips, labels, step = swin_t_training(shape, num_classes)
    fwd = tf.function(lambda x: model(x, training=False))
    fwd_xla = tf.function(lambda x: model(x, training=False), jit_compile=True)
    train = tf.function(step)
    train_xla = tf.function(step, jit_compile=True)
    out = {}
    out["tf_eager_forward"] = _time(
        "tf_eager_forward", lambda: model(clips, training=False).numpy(), repeats
    )
    out["tf_function_forward"] = _time("tf_function_forward", lambda: fwd(clips).numpy(), repeats)
    out["tf_xla_forward"] = _time("tf_xla_forward", lambda: fwd_xla(clips).numpy(), repeats)
    out["tf_function_train_step"] = _time(
        "tf_function_train_step", lambda: train(clips, labels).numpy(), train_repeats
    )
    if xla_train:
        out["tf_xla_train_step"] = _time(
            "tf_xla_train_step", lambda: train_xla(clips, labels).numpy(), train_repeats
        )
    return out


def bench_torch(shape, num_classes: int, repeats: int, train_repeats: int) -> dict:
    import torch
    from torchvision.models.video import swin3d_t

    torch.manual_seed(0)
    model = swin3d_t(num_classes=num_classes)
    clips = torch.randn(shape[0], shape[4], *shape[1:4])
    labels = torch.ones(shape[0], dtype=torch.long)

    def forward():
        model.eval()
        with torch.no_grad():
            model(clips)

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)

    def train_step():
        model.train()
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(clips), labels)
        loss.backward()
        optimizer.step()

    return {
        "torch_forward": _time("torch_forward", forward, repeats),
        "torch_train_step": _time("torch_train_step", train_step, train_repeats),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1x8x112x112 clips, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--xla-train",
        action="store_true",
        help="also time an XLA-compiled training step (slow to compile and run on CPU)",
    )
    parser.add_argument("--output", default=os.path.join(RESULTS, "model_speed.json"))
    args = parser.parse_args(argv)
    shape = (1, 8, 112, 112, 3) if args.quick else (1, 32, 224, 224, 3)
    repeats = 1 if args.quick else args.repeats
    train_repeats = 1 if args.quick else max(1, args.repeats - 1)
    import tensorflow as tf

    results = {
        "model": "swin_t (28.2M parameters), 400 classes, random weights",
        "input": "x".join(map(str, shape)) + " (N,T,H,W,C)",
        "quick": args.quick,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "tensorflow": tf.__version__,
        },
        **bench_tf(shape, 400, repeats, train_repeats, args.xla_train or args.quick),
        **bench_torch(shape, 400, repeats, train_repeats),
    }
    torch_fwd = results["torch_forward"]["median_s"]
    torch_train = results["torch_train_step"]["median_s"]
    results["ratios_tf_over_torch"] = {
        "eager_forward": results["tf_eager_forward"]["median_s"] / torch_fwd,
        "function_forward": results["tf_function_forward"]["median_s"] / torch_fwd,
        "xla_forward": results["tf_xla_forward"]["median_s"] / torch_fwd,
        "function_train_step": results["tf_function_train_step"]["median_s"] / torch_train,
    }
    if "tf_xla_train_step" in results:
        results["ratios_tf_over_torch"]["xla_train_step"] = (
            results["tf_xla_train_step"]["median_s"] / torch_train
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"Swin-T {results['input']}, {os.cpu_count()} CPUs (median seconds)")
    print(f"{'measurement':<26}{'seconds':>10}{'TF/torch':>10}")
    rows = [
        ("tf_eager_forward", torch_fwd),
        ("tf_function_forward", torch_fwd),
        ("tf_xla_forward", torch_fwd),
        ("torch_forward", None),
        ("tf_function_train_step", torch_train),
        ("tf_xla_train_step", torch_train),
        ("torch_train_step", None),
    ]
    for name, ref in rows:
        if name not in results:
            continue
        sec = results[name]["median_s"]
        ratio = f"{sec / ref:.2f}" if ref else ""
        print(f"{name:<26}{sec:>10.3f}{ratio:>10}")
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
