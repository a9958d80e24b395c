"""python -m serving --model-dir <serving_dir>/<model_name> [--host 127.0.0.1] [--port 8501]
[--grpc-port 8500]: TF Serving's REST API on --port and its gRPC API on --grpc-port."""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # the project's one Keras, before TF loads
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    parser.add_argument("--model-dir", required=True, help="<serving_dir>/<model_name>")
    parser.add_argument("--model-name", help="name in the URL (default: the folder's name)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="both APIs' address; 0.0.0.0 to accept other machines"
    )
    parser.add_argument("--port", type=int, default=8501, help="TF Serving's REST port")
    parser.add_argument(
        "--grpc-port", type=int, default=8500, help="TF Serving's gRPC port (0: no gRPC)"
    )
    parser.add_argument("--poll-interval", type=float, default=5.0, help="seconds between scans")
    parser.add_argument(
        "--max-body-mb",
        type=float,
        default=32.0,
        help="request size limit (REST body, gRPC message)",
    )
    parser.add_argument("--workers", type=int, default=16, help="requests handled at once")
    parser.add_argument(
        "--max-batch", type=int, default=8, help="examples merged into one model call (1: off)"
    )
    parser.add_argument(
        "--batch-threads", type=int, default=2, help="model calls running at once when batching"
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")

    import uvicorn

    from serving.repository import ModelRepository
    from serving.server import create_app

    # Warm-up runs at every batch size the batcher forms, before a version takes traffic.
    batch_sizes = range(1, max(args.max_batch, 1) + 1)
    repository = ModelRepository(args.model_dir, args.poll_interval, args.model_name, batch_sizes)
    host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address
    app = create_app(
        repository,
        int(args.max_body_mb * (1 << 20)),
        args.workers,
        args.max_batch,
        args.batch_threads,
        f"{host}:{args.grpc_port}" if args.grpc_port else None,
    )
    uvicorn.run(
        app, host=args.host, port=args.port, access_log=args.access_log, log_level="warning"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
