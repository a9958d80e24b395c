"""Model versions on disk -> the one version being served, swapped in without dropping requests.

Layout (TF Serving's, written by TFX's Pusher): `<serving_dir>/<model_name>/<version>/`, versions
numeric. A version is complete once its saved_model.pb exists (the Pusher copies it last). A newer
version is loaded in the background and warmed up; only then does one reference assignment make
it current, so requests already running keep the version they started with.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

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
    signature_def_map: dict  # SignatureDefMap as TF Serving prints it (proto JSON)
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


def _signature_def_map(path: str) -> dict:
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, SAVED_MODEL), "rb") as f:
        saved_model.ParseFromString(f.read())
    defs = get_model_metadata_pb2.SignatureDefMap()
    for name, definition in saved_model.meta_graphs[0].signature_def.items():
        defs.signature_def[name].CopyFrom(definition)
    return json_format.MessageToDict(
        defs, including_default_value_fields=True, preserving_proto_field_name=True
    )


def load_version(base_dir: str, version: int) -> LoadedVersion:
    """Loads `base_dir`/`version` and runs every signature once. Raises on any failure."""
    path = os.path.join(base_dir, str(version))
    module = tf.saved_model.load(path)
    signatures = {}
    for name, function in module.signatures.items():
        _, inputs = function.structured_input_signature
        outputs = function.structured_outputs
        signatures[name] = Signature(name, dict(inputs), dict(outputs), function)
    loaded = LoadedVersion(version, path, signatures, _signature_def_map(path), module)
    warm_up(loaded)
    return loaded


def warm_up(loaded: LoadedVersion) -> None:
    """One call of each signature with numeric inputs (zeros, batch 1), so the first real request
    pays no one-off cost and a version that cannot run is never switched to. Signatures that take
    strings (serialized examples) run the same model code after parsing."""
    for signature in loaded.signatures.values():
        if any(spec.dtype == tf.string for spec in signature.inputs.values()):
            continue
        feed = {}
        for name, spec in signature.inputs.items():
            dims = [d if d is not None else _WARM_UP_DIM for d in spec.shape.as_list()]
            if dims:
                dims[0] = 1 if spec.shape[0] is None else dims[0]
            feed[name] = tf.zeros(dims, spec.dtype)
        for value in signature.function(**feed).values():
            np.asarray(value)


class ModelRepository:
    """The served version of one model folder, polled for newer versions."""

    def __init__(self, base_dir: str, poll_interval_s: float = 5.0, name: str | None = None):
        self.base_dir = os.path.abspath(base_dir)
        self.name = name or os.path.basename(self.base_dir.rstrip(os.sep))
        self.poll_interval_s = poll_interval_s
        self.current: LoadedVersion | None = None  # replaced whole, never mutated
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
            try:
                loaded = load_version(self.base_dir, version)
                if _stamp(path) != stamp:
                    raise RuntimeError("the folder changed while it was loaded (still copying?)")
            except Exception as error:  # any bad version must leave the served one in place
                self._failed[version] = _stamp(path) if os.path.isdir(path) else stamp
                self.last_error = f"version {version}: {type(error).__name__}: {error}"
                log.error("model %s: not loaded: %s", self.name, self.last_error)
                continue
            self.current = loaded  # atomic: in-flight requests keep their reference
            self._failed.pop(version, None)
            log.warning("model %s: serving version %d (%s)", self.name, version, path)
            return True
        return False

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
