"""Model versions on disk -> the one version being served, swapped in without dropping requests.

Layout (TF Serving's, written by TFX's Pusher): `<serving_dir>/<model_name>/<version>/`, versions
numeric. A version is complete once its saved_model.pb exists (the Pusher copies it last). A newer
version is loaded in the background and warmed up (its status is LOADING meanwhile); only then does
one reference assignment make it current, so requests already running keep the version they
started with.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from model import warmup

log = logging.getLogger(__name__)
SAVED_MODEL = "saved_model.pb"
_WARM_UP_DIM = 32  # size given to unknown non-batch dimensions (frame height, width) at warm-up


@dataclasses.dataclass(frozen=True)
class Signature:
    """A callable signature: inputs name -> TensorSpec, outputs name -> TensorSpec."""

    name: str
    inputs: dict[str, tf.TensorSpec]
    outputs: dict[str, tf.TensorSpec]
    function: object  # ConcreteFunction: function(**{name: tensor}) -> {name: tensor}


@dataclasses.dataclass(frozen=True)
class LoadedVersion:
    version: int
    path: str
    signatures: dict[str, Signature]
    signature_def_map: dict  # SignatureDefMap as TF Serving's REST API prints it (proto JSON)
    signature_defs: get_model_metadata_pb2.SignatureDefMap  # the same, for gRPC
    module: object  # the loaded SavedModel: owns the variables the signatures read


def complete_versions(base_dir: str) -> list[int]:
    """Numeric version folders holding saved_model.pb, ascending."""
    try:
        names = os.listdir(base_dir)
    except FileNotFoundError:
        return []
    return sorted(
        int(n)
        for n in names
        if n.isdigit() and os.path.isfile(os.path.join(base_dir, n, SAVED_MODEL))
    )


def _stamp(path: str) -> tuple:
    """Every file's (path, size, mtime): differs while the folder is still being written."""
    return tuple(
        sorted(
            (os.path.join(root, f), s.st_size, s.st_mtime_ns)
            for root, _, files in os.walk(path)
            for f in files
            for s in [os.stat(os.path.join(root, f))]
        )
    )


def _signature_defs(path: str) -> get_model_metadata_pb2.SignatureDefMap:
    defs = get_model_metadata_pb2.SignatureDefMap()
    for name, definition in warmup.signature_defs(path).items():
        defs.signature_def[name].CopyFrom(definition)
    return defs


def load_version(base_dir: str, version: int, batch_sizes=(1,)) -> LoadedVersion:
    """Loads `base_dir`/`version` and warms it up (warm_up). Raises on any failure."""
    path = os.path.join(base_dir, str(version))
    module = tf.saved_model.load(path)
    signatures = {}
    for name, function in module.signatures.items():
        _, inputs = function.structured_input_signature
        outputs = function.structured_outputs
        signatures[name] = Signature(name, dict(inputs), dict(outputs), function)
    defs = _signature_defs(path)
    as_json = json_format.MessageToDict(
        defs, including_default_value_fields=True, preserving_proto_field_name=True
    )
    loaded = LoadedVersion(version, path, signatures, as_json, defs, module)
    warm_up(loaded, batch_sizes)
    return loaded


def call_signature(signature: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One model call: numpy in, numpy out."""
    outputs = signature.function(**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: np.asarray(v) for k, v in outputs.items()}


def warm_up_requests(loaded: LoadedVersion) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The export's warm-up records (model/warmup.py), and zeros (batch 1) for each numeric
    signature they leave out. Signatures taking strings (serialized examples) have no
    stand-in input: they run the same model code after parsing."""
    requests = warmup.read_requests(loaded.path)
    covered = {name for name, _ in requests}
    for name, signature in sorted(loaded.signatures.items()):
        if name in covered or any(s.dtype == tf.string for s in signature.inputs.values()):
            continue
        inputs = {
            k: warmup.sample_input(s.dtype, s.shape.as_list(), _WARM_UP_DIM)
            for k, s in signature.inputs.items()
        }
        requests.append((name, inputs))
    return requests


def warm_up(loaded: LoadedVersion, batch_sizes=(1,)) -> None:
    """Runs every warm-up request at every batch size in `batch_sizes` (its rows repeated), so
    the first real requests, batched by the server in sizes up to its --max-batch, pay no
    one-off cost, and a version that cannot run is never switched to."""
    requests = warm_up_requests(loaded)
    for name, inputs in requests:
        if name not in loaded.signatures:
            raise ValueError(f"warm-up request for signature {name!r}, which the model lacks")
        for size in batch_sizes:
            rows = {k: _repeat_rows(v, size) for k, v in inputs.items()}
            call_signature(loaded.signatures[name], rows)
    log.warning(
        "version %d: warmed up %s at batch sizes %s",
        loaded.version,
        sorted({name for name, _ in requests}),
        list(batch_sizes),
    )


def _repeat_rows(array: np.ndarray, rows: int) -> np.ndarray:
    if array.ndim == 0:
        return array
    return np.take(array, np.arange(rows) % len(array), axis=0)


class ModelRepository:
    """The served version of one model folder, polled for newer versions."""

    def __init__(
        self,
        base_dir: str,
        poll_interval_s: float = 5.0,
        name: str | None = None,
        batch_sizes=(1,),
    ):
        """`batch_sizes`: the sizes each warm-up request runs at (the batcher's 1..max_batch)."""
        self.base_dir = os.path.abspath(base_dir)
        self.name = name or os.path.basename(self.base_dir.rstrip(os.sep))
        self.poll_interval_s = poll_interval_s
        self.batch_sizes = tuple(batch_sizes)
        self.current: LoadedVersion | None = None  # replaced whole, never mutated
        self.loading: int | None = None  # the version being loaded and warmed up
        self.last_error: str | None = None
        self._failed: dict[int, tuple] = {}  # version -> folder stamp of the failed attempt
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> bool:
        """Loads the newest complete version newer than the current one; True if it switched."""
        served = self.current.version if self.current else -1
        for version in reversed(complete_versions(self.base_dir)):
            if version <= served:
                return False
            path = os.path.join(self.base_dir, str(version))
            stamp = _stamp(path)
            if self._failed.get(version) == stamp:
                continue  # failed before and unchanged since: try an older one
            self.loading = version
            try:
                loaded = load_version(self.base_dir, version, self.batch_sizes)
                if _stamp(path) != stamp:
                    raise RuntimeError("the folder changed while it was loaded (still copying?)")
            except Exception as error:  # any bad version must leave the served one in place
                self._failed[version] = _stamp(path) if os.path.isdir(path) else stamp
                self.last_error = f"version {version}: {type(error).__name__}: {error}"
                log.error("model %s: not loaded: %s", self.name, self.last_error)
                continue
            finally:
                self.loading = None
            self.current = loaded  # atomic: in-flight requests keep their reference
            self._failed.pop(version, None)
            log.warning("model %s: serving version %d (%s)", self.name, version, path)
            return True
        return False

    def states(self) -> list[tuple[int, str]]:
        """(version, TF Serving's state name) of the served version, then of one being loaded."""
        current, loading = self.current, self.loading
        states = [(current.version, "AVAILABLE")] if current else []
        return states + ([(loading, "LOADING")] if loading is not None else [])

    def start(self) -> None:
        """Polls in a daemon thread until stop()."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            try:
                self.poll_once()
            except Exception:  # e.g. the folder vanished: keep serving, keep polling
                log.exception("model %s: polling %s failed", self.name, self.base_dir)
