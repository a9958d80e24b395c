"""Serving under load: REST and gRPC on loopback vs calling the SavedModel in-process.

    python -m benchmarks.serving_load [--quick] [--model-dir <serving_dir>/<model_name>]

Four paths, each against a freshly started `python -m serving` on 127.0.0.1 with 8 concurrent
clients (keep-alive HTTP connections, or one gRPC channel each), one clip per request, the
embedded data set's clips (40 frames, 64x64):
  rest_examples   serving_default, a serialized example (JPEG frames) as {"b64": ...} JSON
  rest_frames     serving_frames, uint8 [1, T, 64, 64, 3] as JSON numbers
  grpc_examples   serving_default, the example as a DT_STRING TensorProto
  grpc_frames     serving_frames, the clip as a DT_UINT8 TensorProto (raw bytes)
Each server run measures the first burst (the requests sent as soon as the port answers) and
then, after a warm-up of 2 requests per client, the same requests again (warm). The reference is
the same requests as sequential in-process calls of the same signature in the same run, and
`rest_examples_no_records` is the first burst of a copy of the model without its warm-up
records (what the server did before it replayed them). Writes benchmarks/results/
serving_load.json. Without --model-dir it serves a small Video Swin with the exported model's
signatures (tests/serving/contract_model.py); a model without warm-up records gets them in its
temporary copy. Timings are only comparable on a quiet machine: the load average is recorded.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import http.client
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchmarks import results
from model import keras_env

keras_env.use_tf_keras()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATHS = ("rest_examples", "rest_frames", "grpc_examples", "grpc_frames")
SIGNATURE = {"examples": "serving_default", "frames": "serving_frames"}


def _clips(count: int, frames: int) -> tuple[list[bytes], list]:
    """`count` clips of the embedded data set: (serialized examples of all 40 JPEG frames, the
    centre `frames` frames as uint8 [1, frames, H, W, 3])."""
    from data import example_proto, features, synthetic, video

    examples, arrays = [], []
    for i in range(count):
        name = synthetic.SPEC.classes[i % len(synthetic.SPEC.classes)]
        clip = synthetic.render_clip(name, [i], [i, 1])
        examples.append(
            example_proto.make_example({features.FRAMES: [video.encode_jpeg(f) for f in clip]})
        )
        start = (len(clip) - frames) // 2
        arrays.append(clip[None, start : start + frames])
    return examples, arrays


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
        answered = list(pool.map(run, chunks))
    wall = time.perf_counter() - start
    return _summary([x for r, _ in answered for x in r], wall, sum(e for _, e in answered))


def bench_in_process(signature, name: str, values: list, warm_up: int) -> dict:
    """The same requests as sequential direct calls of the loaded signature."""
    import tensorflow as tf

    def call(value):
        batch = value if name == "frames" else [value]
        signature(**{name: tf.constant(batch)})["probabilities"].numpy()

    _run_concurrently(values[:warm_up], 1, lambda: call)
    return _run_concurrently(values, 1, lambda: call)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rest_worker(port: int, model: str):
    def make():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

        def call(body: bytes):
            headers = {"Content-Type": "application/json"}
            connection.request("POST", f"/v1/models/{model}:predict", body, headers)
            response = connection.getresponse()
            data = response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
            json.loads(data)["predictions"][0]["probabilities"]

        return call

    return make


def _grpc_worker(port: int):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    def make():
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return lambda request: stub.Predict(request, timeout=300).outputs["probabilities"]

    return make


def _requests(path: str, model: str, examples: list[bytes], clips: list) -> list:
    """The request bodies (REST) or PredictRequest protos (gRPC) of one path."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    protocol, name = path.split("_")
    values = examples if name == "examples" else clips
    out = []
    for value in values:
        if protocol == "rest":
            instance = {"b64": base64.b64encode(value).decode()} if name == "examples" else None
            instances = [instance] if instance else value.tolist()
            out.append(
                json.dumps({"signature_name": SIGNATURE[name], "instances": instances}).encode()
            )
        else:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model
            request.model_spec.signature_name = SIGNATURE[name]
            tensor = [value] if name == "examples" else value
            request.inputs[name].CopyFrom(tf.make_tensor_proto(tensor))
            out.append(request)
    return out


def bench_server(model_dir: str, path: str, requests: list, clients: int, flags: list) -> dict:
    """A fresh server: {"first_burst": ..., "warm": ..., "start_s": ...}."""
    model = os.path.basename(model_dir.rstrip("/"))
    port, grpc_port = _free_port(), _free_port()
    command = [sys.executable, "-m", "serving", "--model-dir", model_dir, "--port", str(port)]
    command += ["--grpc-port", str(grpc_port), *flags]
    with tempfile.TemporaryFile() as log:
        start = time.monotonic()
        server = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=dict(os.environ, PYTHONPATH=REPO_ROOT),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_served(server, f"http://127.0.0.1:{port}/v1/models/{model}")
            started = time.monotonic() - start
            worker = (
                _rest_worker(port, model) if path.startswith("rest") else _grpc_worker(grpc_port)
            )
            first = _run_concurrently(requests, clients, worker)
            _run_concurrently(requests[: 2 * clients], clients, worker)
            warm = _run_concurrently(requests, clients, worker)
        finally:
            server.terminate()
            server.wait(timeout=60)
            if server.returncode not in (0, -15):
                log.seek(0)
                print(log.read().decode(errors="replace"), file=sys.stderr)
    return {"start_s": started, "first_burst": first, "warm": warm}


def _wait_until_served(server: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"the server did not start (exit {server.poll()})")


def _models(root: str, model_dir: str | None, frames: int, size: int) -> tuple[str, str]:
    """(a copy of the model with warm-up records, a copy without), each `root`/<x>/<name>/1."""
    sys.path.insert(0, REPO_ROOT)
    from model import warmup

    if model_dir:
        name = os.path.basename(model_dir.rstrip("/"))
        version = max(int(v) for v in os.listdir(model_dir) if v.isdigit())
        export = os.path.join(model_dir, str(version))
    else:
        from tests.serving import contract_model

        name = "video_swin"
        (export,) = contract_model.save_contract_models(
            [os.path.join(root, "export")], frames=frames, size=size
        )
    copies = []
    for kind in ("with_records", "no_records"):
        target = os.path.join(root, kind, name, "1")
        shutil.copytree(export, target)
        records = os.path.join(target, warmup.REQUESTS_FILE)
        if kind == "no_records" and os.path.exists(records):
            os.remove(records)
        if kind == "with_records" and not os.path.exists(records):
            warmup.write_requests(target, frame_size=size)
        copies.append(os.path.dirname(target))
    return copies[0], copies[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="48 requests, one round: a smoke run")
    parser.add_argument("--model-dir", help="<serving_dir>/<model_name> (default: a small model)")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="each configuration, interleaved")
    parser.add_argument("--frames", type=int, default=8, help="the model's clip length T")
    parser.add_argument("--size", type=int, default=64, help="the default model's frame size")
    parser.add_argument("--paths", nargs="*", choices=PATHS, default=list(PATHS))
    parser.add_argument(
        "--server-flags", default="", help='extra `python -m serving` flags, e.g. "--workers 8"'
    )
    parser.add_argument("--output", default=str(results.path("serving_load")))
    args = parser.parse_args(argv)
    count, rounds = (48, 1) if args.quick else (args.requests, args.rounds)
    examples, clips = _clips(16, args.frames)
    examples = [examples[i % len(examples)] for i in range(count)]
    clips = [clips[i % len(clips)] for i in range(count)]
    flags = args.server_flags.split()
    load_before = results.load_1min()
    import tensorflow as tf

    runs: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as root:
        with_records, no_records = _models(root, args.model_dir, args.frames, args.size)
        module = tf.saved_model.load(os.path.join(with_records, "1"))
        model = os.path.basename(with_records)
        print(f"{args.model_dir or 'contract model'}: {count} requests, {args.clients} clients")
        for round_ in range(rounds):
            for name, values in (("examples", examples), ("frames", clips)):
                signature = module.signatures[SIGNATURE[name]]
                result = bench_in_process(signature, name, values, 2 * args.clients)
                runs.setdefault(f"in_process_{name}", []).append(result)
                print(f"  {round_}: {f'in_process_{name}':<26} {_line(result)}", flush=True)
            for path in args.paths:
                requests = _requests(path, model, examples, clips)
                result = bench_server(with_records, path, requests, args.clients, flags)
                runs.setdefault(path, []).append(result)
                for phase in ("first_burst", "warm"):
                    label = f"{path} {phase}"
                    print(f"  {round_}: {label:<26} {_line(result[phase])}", flush=True)
            if "rest_examples" in args.paths:
                requests = _requests("rest_examples", model, examples, clips)
                result = bench_server(no_records, "rest_examples", requests, args.clients, flags)
                runs.setdefault("rest_examples_no_records", []).append(result)
                for phase in ("first_burst", "warm"):
                    label = f"rest_examples_no_records {phase}"
                    print(f"  {round_}: {label:<26} {_line(result[phase])}", flush=True)
    summary = _report(args, runs, load_before, tf.__version__)
    results.write("serving_load", summary, args.output)
    print(f"throughput over sequential in-process calls: best of {rounds} round(s) [per round]")
    for key, value in summary["over_in_process"].items():
        rounds_ = ", ".join(f"{r:.2f}" for r in summary["over_in_process_per_round"][key])
        print(f"  {key:<38} {value:.2f} [{rounds_}]")
    print(f"-> {args.output}")
    return 0


def _report(args, runs: dict, load_before, tf_version: str) -> dict:
    def best(measurements: list[dict]) -> dict:
        return max(measurements, key=lambda r: r["throughput_rps"])

    ratios, per_round = {}, {}
    for path, measurements in runs.items():
        if path.startswith("in_process"):
            continue
        references = runs["in_process_" + path.split("_")[1]]
        for phase in ("first_burst", "warm"):
            measured = [r[phase]["throughput_rps"] for r in measurements]
            ratios[f"{path} {phase}"] = max(measured) / best(references)["throughput_rps"]
            per_round[f"{path} {phase}"] = [  # against the same round's in-process calls
                m / reference["throughput_rps"]
                for m, reference in zip(measured, references, strict=True)
            ]

    def errors(result: dict) -> int:
        if "errors" in result:
            return result["errors"]
        return result["first_burst"]["errors"] + result["warm"]["errors"]

    return {
        "model": args.model_dir
        or f"contract model: Video Swin tiny_w4, {args.frames}x{args.size}x{args.size} clips",
        "requests": "one clip of the embedded data set (40 JPEG frames of 64x64) per request; "
        f"frames paths: its centre {args.frames} frames as uint8",
        "clients": args.clients,
        "server_flags": args.server_flags,
        "quick": args.quick,
        "over_in_process": ratios,
        "over_in_process_per_round": per_round,
        "errors": sum(errors(r) for measurements in runs.values() for r in measurements),
        "rounds": runs,
        "load_1min": [load_before, results.load_1min()],
        "software": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "tensorflow": tf_version,
        },
    }


def _line(r: dict) -> str:
    return (
        f"{r['throughput_rps']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
        f"{r['errors']} errors of {r['requests']}"
    )


if __name__ == "__main__":
    sys.exit(main())
