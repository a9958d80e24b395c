"""TF Serving's gRPC API (tensorflow_serving/apis, tensorflow-serving-api 2.16.1) over the same
repository, versions and batcher as the REST API, so TF Serving's own clients work:

    PredictionService.Predict           inputs and outputs as TensorProtos: uint8 frames travel as
                                        raw bytes (tensor_content), not as JSON numbers
    PredictionService.GetModelMetadata  metadata_field "signature_def" -> SignatureDefMap
    ModelService.GetModelStatus         the served version (and one being loaded)

Classify, Regress and MultiInference answer UNIMPLEMENTED (the model has predict signatures).
Errors carry the gRPC code of the REST status: INVALID_ARGUMENT (400), NOT_FOUND (404),
UNAVAILABLE (503, no version loaded yet), INTERNAL (500); a message over the size limit is
refused by gRPC itself with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import api
from serving.repository import ModelRepository

log = logging.getLogger(__name__)
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
_SIGNATURE_DEF = "signature_def"  # the one metadata field TF Serving offers


def _answers_errors(method):
    """RequestError -> its gRPC status; anything else -> INTERNAL, logged."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except api.RequestError as error:
            context.abort(_CODES.get(error.status, grpc.StatusCode.INTERNAL), str(error))
        except Exception as error:
            log.exception("gRPC %s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")

    return wrapper


def _version(spec) -> int | None:
    if spec.WhichOneof("version_choice") == "version_label":
        raise api.RequestError(
            400, f"version label {spec.version_label!r}: this server assigns no version labels"
        )
    return spec.version.value if spec.HasField("version") else None


def _input(proto, spec: tf.TensorSpec, name: str) -> np.ndarray:
    if proto.dtype != spec.dtype.as_datatype_enum:
        raise api.RequestError(
            400,
            f"input {name!r}: got {types_pb2.DataType.Name(proto.dtype)}, the signature takes "
            f"{types_pb2.DataType.Name(spec.dtype.as_datatype_enum)}",
        )
    try:
        array = tf.make_ndarray(proto)
    except (ValueError, TypeError) as error:
        raise api.RequestError(400, f"input {name!r}: not a valid TensorProto: {error}") from None
    return api.check_shape(array, spec, name)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, repository: ModelRepository, call: api.Call):
        self._repository, self._call = repository, call

    @_answers_errors
    def Predict(self, request, context):  # noqa: N802 (the proto's method names)
        spec = request.model_spec
        loaded = api.served(self._repository, spec.name, _version(spec))
        signature = api.signature(loaded, spec.signature_name or api.DEFAULT_SIGNATURE)
        api.check_names(signature, request.inputs, "inputs")
        wanted = list(request.output_filter) or list(signature.outputs)
        unknown = sorted(set(wanted) - set(signature.outputs))
        if unknown or len(set(wanted)) != len(wanted):
            raise api.RequestError(
                400,
                f"output_filter {list(request.output_filter)}: give each output at most once, "
                f"of {sorted(signature.outputs)}",
            )
        inputs = {k: _input(request.inputs[k], s, k) for k, s in signature.inputs.items()}
        outputs = api.predict(self._call, signature, inputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self._repository.name
        response.model_spec.version.value = loaded.version
        response.model_spec.signature_name = signature.name
        for name in wanted:
            response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
        return response

    @_answers_errors
    def GetModelMetadata(self, request, context):  # noqa: N802
        fields = list(request.metadata_field)
        if fields != [_SIGNATURE_DEF]:
            raise api.RequestError(
                400, f"metadata_field {fields}: the one field offered is {_SIGNATURE_DEF!r}"
            )
        spec = request.model_spec
        loaded = api.served(self._repository, spec.name, _version(spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self._repository.name
        response.model_spec.version.value = loaded.version
        response.metadata[_SIGNATURE_DEF].Pack(loaded.signature_defs)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, repository: ModelRepository):
        self._repository = repository

    @_answers_errors
    def GetModelStatus(self, request, context):  # noqa: N802
        spec = request.model_spec
        states = api.states(self._repository, spec.name, _version(spec))
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, state in states:
            status = response.model_version_status.add(version=version)
            status.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
        return response


def start(
    address: str, repository: ModelRepository, call: api.Call, workers: int, max_message: int
) -> grpc.Server:
    """TF Serving's gRPC services on `address` ("host:port"), started."""
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", max_message),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(repository, call), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(repository), server)
    server.add_insecure_port(address)  # raises where the port is taken
    server.start()
    return server
