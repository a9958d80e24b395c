"""Reads PyTorch `.pth` checkpoints without PyTorch, and without executing anything in them.

A `.pth` written by torch >= 1.6 is a zip archive: `<name>/data.pkl` (a protocol-2 pickle of the
object, tensors replaced by persistent ids) plus one raw little-endian byte buffer per storage,
`<name>/data/<key>`. The pickle is read by an Unpickler whose find_class hands out only stand-ins
written here (tensor rebuild, storage types, OrderedDict and a few plain builtins), so no global
named in the file is ever imported or called; every storage becomes a numpy array with the
checkpoint's dtype, shape, strides and offset. Tensors come back as numpy arrays (bfloat16 as
float32), everything else as plain Python values.
"""

from __future__ import annotations

import collections
import io
import pickle
import tarfile
import zipfile

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or converted faithfully (unsafe, incomplete, mismatched)."""


_BFLOAT16 = "bfloat16"  # no numpy dtype: read as uint16, widened to float32

_STORAGE_DTYPES = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": _BFLOAT16,
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}


class _StorageType:
    """Stand-in for torch.<X>Storage: only its dtype is used."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype is _BFLOAT16 else self.dtype.itemsize


class _Storage:
    """One storage's elements as a flat numpy array (uint16 bits for bfloat16)."""

    def __init__(self, flat: np.ndarray, storage_type: _StorageType, key: str):
        self.flat, self.type, self.key = flat, storage_type, key


class _StateDict(collections.OrderedDict):
    """OrderedDict that keeps torch's `_metadata` (set by BUILD) as an inert attribute."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("OrderedDict state must be a dict")
        self.__dict__.update({str(k): v for k, v in state.items()})


def _int_tuple(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise pickle.UnpicklingError(f"tensor {what} must be non-negative integers, got {value!r}")
    return tuple(value)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> np.ndarray:
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, meta])."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(
            f"tensor storage must be a persistent storage, got {storage!r}"
        )
    (offset,) = _int_tuple((storage_offset,), "offset")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise pickle.UnpicklingError(f"tensor size {size} and stride {stride} differ in rank")
    flat = storage.flat
    if 0 in size:
        array = np.zeros(size, flat.dtype)
    else:
        needed = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
        if needed > flat.size:
            raise CheckpointError(
                f"tensor of shape {size} (stride {stride}, offset {offset}) needs {needed} "
                f"elements but its storage data/{storage.key} holds {flat.size}"
            )
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=[s * flat.itemsize for s in stride], writeable=False
        )
        array = np.array(view)  # a contiguous copy: nothing aliases the zip's buffer
    if storage.type.dtype is _BFLOAT16:
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, state=None) -> np.ndarray:
    """torch._utils._rebuild_parameter[_with_state]: a Parameter is just its data here."""
    if not isinstance(data, np.ndarray):
        raise pickle.UnpicklingError(f"parameter data must be a tensor, got {type(data).__name__}")
    return data


def _encode(text, encoding="latin1"):  # protocol 2 writes bytes as _codecs.encode(str, 'latin1')
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin1 bytes")
    return text.encode("latin1")


_ALLOWED = {
    ("collections", "OrderedDict"): _StateDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("_codecs", "encode"): _encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}
_PY2_MODULES = {"__builtin__": "builtins"}  # protocol 2 names Python 2's module


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix, self._byteorder = archive, prefix, byteorder
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        module = _PY2_MODULES.get(module, module)
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"malformed storage id {pid!r}")
        if key not in self._storages:
            self._storages[key] = self._read_storage(storage_type, key, numel)
        storage = self._storages[key]
        if storage.type is not storage_type:
            raise CheckpointError(f"storage data/{key} is used with two dtypes")
        return storage

    def _read_storage(self, storage_type: _StorageType, key: str, numel: int) -> _Storage:
        entry = f"{self._prefix}/data/{key}"
        try:
            info = self._archive.getinfo(entry)
        except KeyError:
            raise CheckpointError(f"storage entry {entry} is missing from the archive") from None
        expected = numel * storage_type.itemsize
        if info.file_size != expected:
            raise CheckpointError(
                f"storage entry {entry} holds {info.file_size} bytes; {numel} elements of "
                f"{storage_type.name} need {expected} (truncated or corrupt file)"
            )
        raw = self._archive.read(entry)
        dtype = np.dtype(np.uint16) if storage_type.dtype is _BFLOAT16 else storage_type.dtype
        flat = np.frombuffer(raw, dtype.newbyteorder("<" if self._byteorder == "little" else ">"))
        flat = flat.view(dtype) if flat.dtype.isnative else flat.astype(dtype)
        return _Storage(flat, storage_type, key)


class _RefusedGlobal(pickle.UnpicklingError):
    pass


def _archive_prefix(archive: zipfile.ZipFile, path: str) -> str:
    prefixes = [n[: -len("/data.pkl")] for n in archive.namelist() if n.endswith("/data.pkl")]
    prefixes = [p for p in prefixes if p and "/" not in p]
    if len(prefixes) != 1:
        raise CheckpointError(
            f"{path}: a zip, but not a PyTorch checkpoint (expected one <name>/data.pkl, "
            f"found {len(prefixes)})"
        )
    return prefixes[0]


def read(path: str):
    """Unpickles a torch >= 1.6 `.pth` safely: tensors -> numpy arrays, containers -> Python.

    Raises CheckpointError naming the file (and the global, entry or tensor at fault) for a
    legacy or foreign file, a global outside the allow-list, or storages that do not fit.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint: {e}") from e
    if not zipfile.is_zipfile(path):
        if head[:1] == b"\x80" or tarfile.is_tarfile(path):  # torch < 1.6: pickle / tar
            raise CheckpointError(
                f"{path}: a legacy (torch < 1.6, non-zip) checkpoint, which is not read without "
                f"PyTorch. Re-save it once with torch >= 1.6: "
                f"torch.save(torch.load(path, weights_only=True), new_path)"
            )
        if head[:2] == b"PK":
            raise CheckpointError(f"{path}: a damaged zip archive (truncated or corrupt download?)")
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither zip nor pickle)")
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive, path)
            names = set(archive.namelist())
            byteorder = "little"
            if f"{prefix}/byteorder" in names:
                byteorder = archive.read(f"{prefix}/byteorder").decode("ascii", "replace").strip()
                if byteorder not in ("little", "big"):
                    raise CheckpointError(f"{path}: unknown byteorder {byteorder!r}")
            data = archive.read(f"{prefix}/data.pkl")
            return _RestrictedUnpickler(data, archive, prefix, byteorder).load()
    except _RefusedGlobal as e:
        raise CheckpointError(
            f"{path}: refused: unpickling it needs code execution: it references the global "
            f"'{e}', which a state dict never needs (only tensors, storages, OrderedDict and "
            f"plain containers are read). Re-save the checkpoint as a plain state dict: "
            f"torch.save(model.state_dict(), path)"
        ) from None
    except CheckpointError as e:
        message = str(e)
        raise CheckpointError(message if message.startswith(path) else f"{path}: {message}") from e
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        OverflowError,
        MemoryError,
        RecursionError,
        OSError,
        zipfile.BadZipFile,
    ) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint: {e}") from e
