"""What TF Serving's REST and gRPC APIs share: finding the version and signature a request names,
checking its tensors against the signature, running the model, and the errors they answer.

Each protocol turns a RequestError into its own answer: an HTTP status and {"error": message}
(serving/server.py), or the gRPC status code of the same meaning (serving/grpc_service.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from serving.repository import LoadedVersion, ModelRepository, Signature

log = logging.getLogger(__name__)
DEFAULT_SIGNATURE = "serving_default"

Call = Callable[[Signature, dict[str, np.ndarray]], dict[str, np.ndarray]]


class RequestError(Exception):
    """A request answered with `status` (HTTP's numbers) and `message`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _check_name(repository: ModelRepository, name: str) -> None:
    if name != repository.name:
        raise RequestError(
            404, f"model {name!r} not found (this server serves {repository.name!r})"
        )


def _number(version: str | int) -> int:
    if isinstance(version, str) and not version.isdigit():
        raise RequestError(400, f"version must be a number, got {version!r}")
    return int(version)


def served(repository: ModelRepository, name: str, version: str | int | None) -> LoadedVersion:
    """The loaded version a request for model `name` (and `version`, if given) runs on."""
    _check_name(repository, name)
    wanted = None if version is None else _number(version)
    if wanted is not None and wanted == repository.loading:
        raise RequestError(503, f"version {wanted} of model {name!r} is still loading")
    loaded = repository.current
    if loaded is None:
        detail = f": {repository.last_error}" if repository.last_error else ""
        raise RequestError(
            503, f"model {name!r} has no loaded version yet in {repository.base_dir}{detail}"
        )
    if wanted is not None and wanted != loaded.version:
        raise RequestError(
            404, f"version {wanted} of model {name!r} is not served; version {loaded.version} is"
        )
    return loaded


def states(repository: ModelRepository, name: str, version: str | int | None) -> list:
    """[(version, state name)] for a status request: the served version (then one still
    loading), or only the version asked for. 503 until a first version is AVAILABLE."""
    _check_name(repository, name)
    if version is None:
        served(repository, name, None)  # raises where nothing is served yet
        return repository.states()
    wanted = _number(version)
    known = [(v, state) for v, state in repository.states() if v == wanted]
    if not known:
        served(repository, name, wanted)  # raises the 404 or 503 that says why
    return known


def signature(loaded: LoadedVersion, name: str) -> Signature:
    if not isinstance(name, str) or name not in loaded.signatures:
        known = sorted(loaded.signatures)
        raise RequestError(
            400, f"signature_name {name!r} not found in the model's signatures {known}"
        )
    return loaded.signatures[name]


def check_names(signature: Signature, given, where: str) -> None:
    missing = sorted(set(signature.inputs) - set(given))
    extra = sorted(set(given) - set(signature.inputs))
    if missing or extra:
        raise RequestError(
            400,
            f"{where}: signature {signature.name!r} takes inputs {sorted(signature.inputs)}; "
            f"missing {missing}, unexpected {extra}",
        )


def check_shape(array: np.ndarray, spec: tf.TensorSpec, name: str) -> np.ndarray:
    expected = spec.shape.as_list()
    if len(expected) != array.ndim or any(
        e is not None and e != a for e, a in zip(expected, array.shape, strict=True)
    ):
        want = "[" + ", ".join("None" if e is None else str(e) for e in expected) + "]"
        raise RequestError(
            400, f"input {name!r}: got shape {list(array.shape)}, the signature takes {want}"
        )
    return array


def predict(call: Call, signature: Signature, inputs: dict[str, np.ndarray]) -> dict:
    """The model's outputs; input values the model rejects -> 400 (as TF Serving answers),
    any other fault -> 500, logged: the server keeps serving."""
    try:
        return call(signature, inputs)
    except tf.errors.InvalidArgumentError as error:
        raise RequestError(400, f"the model rejected the input: {error.message}") from None
    except Exception as error:
        log.exception("signature %s failed", signature.name)
        raise RequestError(500, f"{type(error).__name__}: {error}") from None
