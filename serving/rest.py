"""TF Serving's REST API v1 JSON <-> tensors: request parsing, validation and response shapes.

Follows tensorflow_serving/g3doc/api_rest.md: "instances" (row format, one item per example,
stacked on a new batch dimension) or "inputs" (columnar format, whole tensors); {"b64": "..."}
for DT_STRING values; responses "predictions" (row) or "outputs" (columnar), a bare value when
the signature has one output; string outputs as UTF-8 text, base64 only for names ending "_bytes".
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
import orjson
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from serving import api
from serving.api import RequestError
from serving.repository import LoadedVersion, Signature

_B64 = "b64"


def _bad(message: str) -> RequestError:
    return RequestError(400, message)


def parse_predict(body: bytes, loaded: LoadedVersion) -> tuple[Signature, dict, bool]:
    """Request body -> (signature, {input name: np.ndarray}, row_format)."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise _bad(f"request body is not valid JSON: {error}") from None
    if not isinstance(request, dict):
        raise _bad("request body must be a JSON object with 'instances' or 'inputs'")
    signature = api.signature(loaded, request.get("signature_name", api.DEFAULT_SIGNATURE))
    unknown = sorted(set(request) - {"signature_name", "instances", "inputs"})
    if unknown:
        raise _bad(f"unknown request fields {unknown}; expected 'instances' or 'inputs'")
    if ("instances" in request) == ("inputs" in request):
        raise _bad("the request needs exactly one of 'instances' (row) or 'inputs' (columnar)")
    if "instances" in request:
        return signature, _rows(request["instances"], signature), True
    return signature, _columns(request["inputs"], signature), False


def _is_named(value, signature: Signature) -> bool:
    """A JSON object of named inputs (as opposed to a {"b64": ...} value)."""
    return isinstance(value, dict) and not (set(value) == {_B64} and len(signature.inputs) == 1)


def _named(value, signature: Signature, where: str) -> dict:
    if not _is_named(value, signature):
        if len(signature.inputs) != 1:
            raise _bad(f"{where}: give an object with the inputs {sorted(signature.inputs)}")
        return {next(iter(signature.inputs)): value}
    api.check_names(signature, value, where)
    return value


def _rows(instances, signature: Signature) -> dict:
    if not isinstance(instances, list) or not instances:
        raise _bad("'instances' must be a non-empty list, one item per example")
    rows = [_named(row, signature, f"instances[{i}]") for i, row in enumerate(instances)]
    tensors = {}
    for name, spec in signature.inputs.items():
        values = [
            _array(row[name], spec.dtype, f"instances[{i}].{name}") for i, row in enumerate(rows)
        ]
        shapes = {v.shape for v in values}
        if len(shapes) > 1:
            raise _bad(f"input {name!r}: instances have different shapes {sorted(shapes)}")
        tensors[name] = api.check_shape(np.stack(values), spec, name)
    return tensors


def _columns(inputs, signature: Signature) -> dict:
    named = _named(inputs, signature, "'inputs'")
    return {
        name: api.check_shape(_array(named[name], spec.dtype, f"inputs.{name}"), spec, name)
        for name, spec in signature.inputs.items()
    }


def _array(value, dtype: tf.DType, where: str) -> np.ndarray:
    if dtype == tf.string:
        return _string_array(value, where)
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged nesting
        raise _bad(f"{where}: not a rectangular array of numbers ({error})") from None
    kind, dt_name = array.dtype.kind, types_pb2.DataType.Name(dtype.as_datatype_enum)
    if dtype.is_bool:
        ok = kind == "b"
    elif dtype.is_integer:
        ok = kind in "iu" or (array.size == 0 and kind == "f")
    else:
        ok = kind in "iuf"
    if not ok:
        raise _bad(f"{where}: expected {dt_name} values, got {_describe(array)}")
    if dtype.is_integer and array.size:
        info = np.iinfo(dtype.as_numpy_dtype)
        if array.min() < info.min or array.max() > info.max:
            raise _bad(f"{where}: values outside the range of {dt_name} [{info.min}, {info.max}]")
    return array.astype(dtype.as_numpy_dtype, copy=False)


def _describe(array: np.ndarray) -> str:
    return {"b": "booleans", "f": "non-integer numbers", "U": "strings", "O": "mixed values"}.get(
        array.dtype.kind, str(array.dtype)
    )


def _string_array(value, where: str) -> np.ndarray:
    leaves: list[bytes] = []

    def shape_of(item, path) -> tuple:
        if isinstance(item, list):
            shapes = {shape_of(x, f"{path}[{i}]") for i, x in enumerate(item)}
            if len(shapes) > 1:
                raise _bad(f"{path}: ragged nesting, sub-lists of shapes {sorted(shapes)}")
            return (len(item), *(shapes.pop() if shapes else ()))
        leaves.append(_bytes(item, path))
        return ()

    shape = shape_of(value, where)
    array = np.empty(len(leaves), dtype=object)
    array[:] = leaves
    return array.reshape(shape)


def _bytes(item, where: str) -> bytes:
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, dict) and set(item) == {_B64} and isinstance(item[_B64], str):
        try:
            return base64.b64decode(item[_B64], validate=True)
        except binascii.Error as error:
            raise _bad(f"{where}: invalid base64: {error}") from None
    raise _bad(f'{where}: expected a string or {{"b64": "..."}} for DT_STRING, got {item!r:.60}')


def predict_response(outputs: dict, row_format: bool) -> bytes:
    """{name: tensor} -> the JSON body TF Serving answers."""
    arrays = {name: _jsonable(name, np.asarray(value)) for name, value in outputs.items()}
    if row_format:
        sizes = {len(a) for a in arrays.values()}
        if len(sizes) != 1:
            raise RequestError(500, f"outputs differ in batch size {sorted(sizes)}: use 'inputs'")
        if len(arrays) == 1:
            predictions = next(iter(arrays.values()))
        else:
            predictions = [{name: a[i] for name, a in arrays.items()} for i in range(sizes.pop())]
        return dumps({"predictions": predictions})
    body = next(iter(arrays.values())) if len(arrays) == 1 else arrays
    return dumps({"outputs": body})


def _jsonable(name: str, array: np.ndarray):
    if array.dtype != object:
        return array  # orjson writes numeric numpy arrays natively
    if name.endswith("_bytes"):
        convert = lambda b: {_B64: base64.b64encode(b).decode("ascii")}  # noqa: E731
    else:
        convert = lambda b: b.decode("utf-8", errors="replace")  # noqa: E731
    return np.frompyfunc(convert, 1, 1)(array).tolist() if array.ndim else convert(array.item())


def dumps(value) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def status_response(states: list[tuple[int, str]]) -> bytes:
    """[(version, state name)] -> GetModelStatusResponse as TF Serving's REST API prints it."""
    ok = {"error_code": "OK", "error_message": ""}
    return dumps(
        {
            "model_version_status": [
                {"version": str(version), "state": state, "status": ok} for version, state in states
            ]
        }
    )


def metadata_response(name: str, loaded: LoadedVersion) -> bytes:
    spec = {"name": name, "signature_name": "", "version": str(loaded.version)}
    return dumps({"model_spec": spec, "metadata": {"signature_def": loaded.signature_def_map}})
