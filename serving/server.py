"""The HTTP server: TF Serving's REST paths over a ModelRepository, as a FastAPI (ASGI) app.

    GET  /v1/models/<name>[/versions/<n>]            version status
    GET  /v1/models/<name>[/versions/<n>]/metadata   signature defs
    POST /v1/models/<name>[/versions/<n>]:predict    row ("instances") or columnar ("inputs")

The event loop only moves bytes; parsing, the model call and encoding run in a thread pool
(TensorFlow releases the GIL while it computes), and concurrent requests of one signature are
merged into one model call (serving/batching.py), so load keeps every core busy.
Each request takes the version current when it starts: a swap never affects it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re

import tensorflow as tf
from fastapi import FastAPI, Request
from fastapi.responses import Response

from serving import rest
from serving.batching import Batcher, call_signature
from serving.repository import LoadedVersion, ModelRepository

log = logging.getLogger(__name__)

# TF Serving's own path patterns (http_rest_api_handler.cc), without classify/regress/labels.
_MODEL = r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
_GET = re.compile(_MODEL + r"(?P<metadata>/metadata)?/?")
_POST = re.compile(_MODEL + r":(?P<method>[^/:]+)")


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json(rest.dumps({"error": message}), status)


def create_app(
    repository: ModelRepository,
    max_body_bytes: int = 32 << 20,
    workers: int = 16,
    max_batch: int = 8,
    batch_threads: int = 2,
) -> FastAPI:
    """The ASGI app. On start-up it loads the newest version (before the port answers, where one
    exists) and then polls for newer ones every repository.poll_interval_s."""
    executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="predict")
    batcher = Batcher(max_batch, batch_threads) if max_batch > 1 else None
    call = batcher or call_signature

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.get_running_loop().run_in_executor(executor, repository.poll_once)
        repository.start()
        try:
            yield
        finally:
            repository.stop()
            executor.shutdown(wait=False, cancel_futures=True)
            if batcher:
                batcher.close()

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    def resolve(name: str, version: str | None) -> LoadedVersion:
        if name != repository.name:
            raise rest.RequestError(
                404, f"model {name!r} not found (this server serves {repository.name!r})"
            )
        loaded = repository.current
        if loaded is None:
            detail = f": {repository.last_error}" if repository.last_error else ""
            raise rest.RequestError(
                503, f"model {name!r} has no loaded version yet in {repository.base_dir}{detail}"
            )
        if version is not None:
            if not version.isdigit():
                raise rest.RequestError(400, f"version must be a number, got {version!r}")
            if int(version) != loaded.version:
                raise rest.RequestError(
                    404,
                    f"version {version} of model {name!r} is not served; "
                    f"version {loaded.version} is",
                )
        return loaded

    def predict(loaded: LoadedVersion, body: bytes) -> bytes:
        signature, inputs, row_format = rest.parse_predict(body, loaded)
        try:
            outputs = call(signature, inputs)
        except tf.errors.InvalidArgumentError as error:  # the model rejected the input values
            raise rest.RequestError(400, f"the model rejected the input: {error.message}") from None
        return rest.predict_response(outputs, row_format)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])
    async def handle(request: Request) -> Response:
        path = request.url.path
        try:
            if request.method not in ("GET", "POST"):
                raise rest.RequestError(405, f"method {request.method} not allowed: GET or POST")
            if request.method == "GET":
                match = _GET.fullmatch(path)
                if not match:
                    raise rest.RequestError(404, f"no such path: GET {path}")
                loaded = resolve(match["name"], match["version"])
                if match["metadata"]:
                    return _json(rest.metadata_response(repository.name, loaded))
                return _json(rest.status_response(repository.name, loaded))
            # The body first: a client that is still sending must hear the answer, not a reset.
            body = await _read_body(request, max_body_bytes)
            match = _POST.fullmatch(path)
            if not match:
                raise rest.RequestError(404, f"no such path: POST {path}")
            if match["method"] != "predict":
                raise rest.RequestError(
                    400, f"method {match['method']!r} is not supported; use :predict"
                )
            loaded = resolve(match["name"], match["version"])
            loop = asyncio.get_running_loop()
            return _json(await loop.run_in_executor(executor, predict, loaded, body))
        except rest.RequestError as error:
            return _error(error.status, str(error))
        except Exception as error:  # a model or server fault: answer it, keep serving
            log.exception("request %s %s failed", request.method, path)
            return _error(500, f"{type(error).__name__}: {error}")

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or a 413 once it passes `limit`. An oversize body is still read (and dropped,
    up to 4x the limit) so that clients which send all of it before reading hear the 413
    instead of a broken pipe; a client that asked "Expect: 100-continue" is refused at once."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        if request.headers.get("expect", "").lower() != "100-continue":
            await _drain(request, 4 * limit)
        raise rest.RequestError(
            413, f"request body of {declared} bytes exceeds the limit of {limit}"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await _drain(request, 4 * limit - size)
            raise rest.RequestError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(request: Request, budget: int) -> None:
    async for chunk in request.stream():
        budget -= len(chunk)
        if budget < 0:
            return
