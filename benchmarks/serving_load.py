"""Serving under load: the REST server on loopback vs calling the SavedModel in-process.

    python -m benchmarks.serving_load [--quick] [--model-dir <serving_dir>/<model_name>]

8 concurrent clients send a fixed set of requests (one serialized example each, as the video
client sends) to `python -m serving` on 127.0.0.1, over keep-alive connections; the same requests
then run in-process from 8 threads on the same signature. Reports errors, p50/p99 latency and
throughput of both; writes benchmarks/results/serving_load.json. Without --model-dir it serves a
small Video Swin with the exported model's signatures (tests/serving/contract_model.py).
Timings are only comparable on a quiet machine: the load average is recorded beside them.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _examples(count: int) -> list[bytes]:
    """`count` serialized examples (`frames` only) of the embedded data set's clips."""
    from data import example_proto, features, synthetic, video

    out = []
    for i in range(count):
        name = synthetic.SPEC.classes[i % len(synthetic.SPEC.classes)]
        clip = synthetic.render_clip(name, [i], [i, 1])
        out.append(
            example_proto.make_example({features.FRAMES: [video.encode_jpeg(f) for f in clip]})
        )
    return out


def _summary(latencies: list[float], wall: float, errors: int) -> dict:
    import numpy as np

    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies) + errors,
        "errors": errors,
        "wall_s": wall,
        "throughput_rps": len(latencies) / wall,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
    }


def _run_concurrently(calls: list, clients: int, make_worker) -> dict:
    """Runs `calls` (one argument each) on `clients` threads, each with its own worker."""
    chunks = [calls[i::clients] for i in range(clients)]

    def run(chunk):
        worker, latencies, errors = make_worker(), [], 0
        for call in chunk:
            start = time.perf_counter()
            try:
                worker(call)
                latencies.append(time.perf_counter() - start)
            except Exception as error:
                errors += 1
                print(f"  error: {error}", file=sys.stderr)
        return latencies, errors

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(run, chunks))
    wall = time.perf_counter() - start
    return _summary([x for r, _ in results for x in r], wall, sum(e for _, e in results))


def bench_in_process(signature, examples: list[bytes], clients: int, warm_up: int) -> dict:
    """The same requests as direct calls of the loaded signature from `clients` threads."""
    import tensorflow as tf

    def worker():
        return lambda example: signature(examples=tf.constant([example]))["probabilities"].numpy()

    _run_concurrently(examples[:warm_up], clients, worker)
    return _run_concurrently(examples, clients, worker)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(model_dir: str, log, flags: list[str]) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "serving", "--model-dir", model_dir, "--port", str(port), *flags],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1/models/{os.path.basename(model_dir.rstrip('/'))}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return server, port
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not start; see its log")


def bench_server(
    model_dir: str, examples: list[bytes], clients: int, warm_up: int, flags: list[str]
) -> dict:
    name = os.path.basename(model_dir.rstrip("/"))
    bodies = [
        json.dumps({"instances": [{"b64": base64.b64encode(e).decode()}]}).encode()
        for e in examples
    ]
    with tempfile.TemporaryFile() as log:
        server, port = _start_server(model_dir, log, flags)
        try:

            def worker():
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

                def call(body):
                    connection.request(
                        "POST",
                        f"/v1/models/{name}:predict",
                        body,
                        {"Content-Type": "application/json"},
                    )
                    response = connection.getresponse()
                    data = response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
                    json.loads(data)["predictions"][0]["probabilities"]

                return call

            _run_concurrently(bodies[:warm_up], clients, worker)
            result = _run_concurrently(bodies, clients, worker)
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.seek(0)
            result_log = log.read().decode(errors="replace")
    if server.returncode not in (0, -15):
        print(result_log, file=sys.stderr)
    return result


def _contract_model(root: str, frames: int, size: int) -> str:
    """A pushed version 1 of the contract model under `root`/video_swin."""
    sys.path.insert(0, REPO_ROOT)
    from tests.serving import contract_model

    (export,) = contract_model.save_contract_models(
        [os.path.join(root, "export")], frames=frames, size=size
    )
    base = os.path.join(root, "video_swin")
    contract_model.push(export, base, 1)
    return base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="80 requests, one round: a smoke run")
    parser.add_argument("--model-dir", help="<serving_dir>/<model_name> (default: a small model)")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="each configuration, interleaved")
    parser.add_argument("--frames", type=int, default=8, help="the default model's clip length")
    parser.add_argument("--size", type=int, default=64, help="the default model's frame size")
    parser.add_argument(
        "--server-flags", default="", help='extra `python -m serving` flags, e.g. "--workers 8"'
    )
    parser.add_argument("--output", default=os.path.join(RESULTS, "serving_load.json"))
    args = parser.parse_args(argv)
    count, rounds = (80, 1) if args.quick else (args.requests, args.rounds)
    examples = _examples(16)
    requests = [examples[i % len(examples)] for i in range(count)]
    warm_up = 2 * args.clients
    flags = args.server_flags.split()
    configurations = {  # the server's default (batching) and, to show what it buys, without
        "server": flags,
        "server_unbatched": [*flags, "--max-batch", "1"],
    }
    load_before = os.getloadavg()
    import tensorflow as tf

    runs: dict[str, list[dict]] = {"in_process": [], **{name: [] for name in configurations}}
    with tempfile.TemporaryDirectory() as root:
        model_dir = args.model_dir or _contract_model(root, args.frames, args.size)
        version = max(int(v) for v in os.listdir(model_dir) if v.isdigit())
        signature = tf.saved_model.load(os.path.join(model_dir, str(version))).signatures[
            "serving_default"
        ]
        print(f"{model_dir} version {version}: {count} requests, {args.clients} clients")
        for round_ in range(rounds):
            runs["in_process"].append(bench_in_process(signature, requests, args.clients, warm_up))
            print(f"  {round_}: {'in_process':<17} {_line(runs['in_process'][-1])}", flush=True)
            for name, server_flags in configurations.items():
                result = bench_server(model_dir, requests, args.clients, warm_up, server_flags)
                runs[name].append(result)
                print(f"  {round_}: {name:<17} {_line(result)}", flush=True)
    best = {name: max(r, key=lambda x: x["throughput_rps"]) for name, r in runs.items()}
    ratio = best["server"]["throughput_rps"] / best["in_process"]["throughput_rps"]
    results = {
        "model": args.model_dir
        or f"contract model: Video Swin tiny_w4, {args.frames}x{args.size}x{args.size} clips",
        "request": "serving_default, one serialized example (40 JPEG frames, 64x64) per request",
        "clients": args.clients,
        "server_flags": args.server_flags,
        "quick": args.quick,
        "best_of_rounds": best,
        "server_over_in_process_throughput": ratio,
        "errors": sum(r["errors"] for rs in runs.values() for r in rs),
        "rounds": runs,
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "tensorflow": tf.__version__,
        },
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"best of {rounds} round(s):")
    for name, result in best.items():
        print(f"  {name:<17} {_line(result)}")
    print(f"  server / in-process throughput: {ratio:.2f}")
    print(f"-> {args.output}")
    return 0


def _line(r: dict) -> str:
    return (
        f"{r['throughput_rps']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
        f"{r['errors']} errors of {r['requests']}"
    )


if __name__ == "__main__":
    sys.exit(main())
