"""The server: TF Serving's REST API as a FastAPI (ASGI) app, and its gRPC API beside it.

    GET  /v1/models/{name}[/versions/{version}]            version status
    GET  /v1/models/{name}[/versions/{version}]/metadata   signature defs
    POST /v1/models/{name}[/versions/{version}]:predict    row ("instances") or columnar ("inputs")
    POST ...:classify, ...:regress                         400: the model has predict signatures
    /docs                                                  this API, documented by FastAPI

Errors are raised as api.RequestError (or by FastAPI's router: 404 no such path, 405 wrong
method) and answered by one handler as {"error": message}, as KServe's model server maps its
errors. The event loop only moves bytes; parsing, the model call and encoding run in a thread
pool (TensorFlow releases the GIL while it computes), and concurrent requests of one signature
are merged into one model call (serving/batching.py), so load keeps every core busy. Each
request takes the version current when it starts: a swap never affects it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException

from serving import api, grpc_service, rest
from serving.batching import Batcher
from serving.repository import ModelRepository, call_signature


class _Text(Convertor):
    def __init__(self, regex: str):
        self.regex = regex

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


# A name or version is a path segment without ':' (TF Serving's `[^/:]+`), so that
# `{name}:predict` splits at the colon; the verbs TF Serving has beside predict.
register_url_convertor("segment", _Text("[^/:]+"))
register_url_convertor("unsupported", _Text("classify|regress"))
MODEL = "/v1/models/{name:segment}"
VERSION = MODEL + "/versions/{version:segment}"
_NOT_OFFERED = "classify, regress: not offered (the model's signatures are predict signatures)"
_PREDICT_BODY = {  # documents the body that predict reads itself (see _read_body)
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object"},
                "example": {"signature_name": "serving_default", "instances": [{"b64": "..."}]},
            }
        },
    }
}


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def create_app(
    repository: ModelRepository,
    max_body_bytes: int = 32 << 20,
    workers: int = 16,
    max_batch: int = 8,
    batch_threads: int = 2,
    grpc_address: str | None = None,
) -> FastAPI:
    """The ASGI app. On start-up it loads the newest version (before the ports answer, where one
    exists), starts TF Serving's gRPC API on `grpc_address` ("host:port", None: none), and then
    polls for newer versions every repository.poll_interval_s."""
    executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="predict")
    batcher = Batcher(max_batch, batch_threads) if max_batch > 1 else None
    call = batcher or call_signature

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.get_running_loop().run_in_executor(executor, repository.poll_once)
        grpc_server = None
        if grpc_address:
            grpc_server = grpc_service.start(
                grpc_address, repository, call, workers, max_body_bytes
            )
        repository.start()
        try:
            yield
        finally:
            repository.stop()
            if grpc_server:
                grpc_server.stop(grace=5).wait()
            executor.shutdown(wait=False, cancel_futures=True)
            if batcher:
                batcher.close()

    app = FastAPI(
        title="video-swin-tfx model server",
        summary="TF Serving's REST API v1 (tensorflow_serving/g3doc/api_rest.md)",
        lifespan=lifespan,
    )

    async def error_response(request: Request, error: Exception) -> Response:
        if isinstance(error, api.RequestError):
            return _json(rest.dumps({"error": str(error)}), error.status)
        assert isinstance(error, HTTPException)  # the router's: no such path, wrong method
        if request.method == "POST":  # a client that is still sending must hear the answer
            await _drain(request, 4 * max_body_bytes)
        path, headers = request.url.path, error.headers or {}
        message = f"no such path: {request.method} {path}"
        if error.status_code == 405:
            allowed = headers.get("Allow", "")
            message = f"method {request.method} not allowed: {path} takes {allowed} (GET or POST)"
        elif error.status_code != 404:
            message = str(error.detail)
        response = _json(rest.dumps({"error": message}), error.status_code)
        response.headers.update(headers)  # Allow, for a 405
        return response

    app.add_exception_handler(api.RequestError, error_response)
    app.add_exception_handler(HTTPException, error_response)

    def metadata(name: str, version: str | None) -> Response:
        loaded = api.served(repository, name, version)
        return _json(rest.metadata_response(repository.name, loaded))

    async def predict(request: Request, name: str, version: str | None) -> Response:
        body = await _read_body(request, max_body_bytes)  # first: see error_response
        loaded = api.served(repository, name, version)

        def run() -> bytes:
            signature, inputs, row_format = rest.parse_predict(body, loaded)
            return rest.predict_response(api.predict(call, signature, inputs), row_format)

        return _json(await asyncio.get_running_loop().run_in_executor(executor, run))

    # The routes: each operation without and with /versions/{version}.
    @app.get(MODEL, summary="Status of the served version (and of one being loaded)")
    async def model_status(name: str) -> Response:
        return _json(rest.status_response(api.states(repository, name, None)))

    @app.get(VERSION, summary="Status of one version: LOADING until warmed up, then AVAILABLE")
    async def version_status(name: str, version: str) -> Response:
        return _json(rest.status_response(api.states(repository, name, version)))

    @app.get(MODEL + "/metadata", summary="Signatures of the served version")
    async def model_metadata(name: str) -> Response:
        return metadata(name, None)

    @app.get(VERSION + "/metadata", summary="Signatures of one version")
    async def version_metadata(name: str, version: str) -> Response:
        return metadata(name, version)

    @app.post(MODEL + ":predict", summary="Predict", openapi_extra=_PREDICT_BODY)
    async def model_predict(request: Request, name: str) -> Response:
        return await predict(request, name, None)

    @app.post(VERSION + ":predict", summary="Predict on one version", openapi_extra=_PREDICT_BODY)
    async def version_predict(request: Request, name: str, version: str) -> Response:
        return await predict(request, name, version)

    @app.post(MODEL + ":{verb:unsupported}", summary=_NOT_OFFERED)
    @app.post(VERSION + ":{verb:unsupported}", summary=_NOT_OFFERED)
    async def classify_or_regress(request: Request, verb: str) -> Response:
        await _read_body(request, max_body_bytes)
        raise api.RequestError(400, f"method {verb!r} is not supported; use :predict")

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or a 413 once it passes `limit`. An oversize body is still read (and dropped,
    up to 4x the limit) so that clients which send all of it before reading hear the 413
    instead of a broken pipe; a client that asked "Expect: 100-continue" is refused at once."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        if request.headers.get("expect", "").lower() != "100-continue":
            await _drain(request, 4 * limit)
        raise api.RequestError(
            413, f"request body of {declared} bytes exceeds the limit of {limit}"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await _drain(request, 4 * limit - size)
            raise api.RequestError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(request: Request, budget: int) -> None:
    with contextlib.suppress(RuntimeError):  # the body was already read (or is gone)
        async for chunk in request.stream():
            budget -= len(chunk)
            if budget < 0:
                return
