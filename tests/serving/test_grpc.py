"""TF Serving's gRPC API on the real server, through TF Serving's own client stubs."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from data import example_proto, features, synthetic, video
from tests.serving.helpers import MODEL_NAME

FRAMES = 8  # the contract model's T
MiB = 1 << 20


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(
        server.grpc_target, options=[("grpc.max_send_message_length", 8 * MiB)]
    ) as channel:
        yield channel


@pytest.fixture(scope="module")
def predictions(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def examples() -> np.ndarray:
    out = []
    for name, count in (("ShiftRight", 30), ("PulseSlow", 10)):
        clip = synthetic.render_clip(name, [1], [2])[:count]
        out.append(
            example_proto.make_example({features.FRAMES: [video.encode_jpeg(f) for f in clip]})
        )
    return np.array(out, dtype=object)


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    return np.random.default_rng(2).integers(0, 256, (2, FRAMES, 36, 44, 3), dtype=np.uint8)


def predict_request(signature: str | None, inputs: dict, version: int | None = None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    if signature:
        request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def expect_same(response, in_process, signature: str, inputs: dict) -> None:
    expected = in_process.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    assert set(response.outputs) == {"probabilities", "classes", "scores"}
    outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
    for name in ("probabilities", "scores"):
        np.testing.assert_allclose(outputs[name], expected[name].numpy(), atol=1e-6)
    np.testing.assert_array_equal(outputs["classes"], expected["classes"].numpy())


def test_predict_serialized_examples(predictions, in_process, examples):
    inputs = {"examples": examples}
    response = predictions.Predict(predict_request(None, inputs), timeout=60)  # serving_default
    assert response.model_spec.name == MODEL_NAME
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    assert response.outputs["probabilities"].dtype == tf.float32.as_datatype_enum
    expect_same(response, in_process, "serving_default", inputs)


def test_predict_uint8_frames_as_bytes(predictions, in_process, clips):
    inputs = {"frames": clips}
    request = predict_request("serving_frames", inputs, version=1)
    assert request.inputs["frames"].tensor_content == clips.tobytes()  # raw bytes, no numbers
    response = predictions.Predict(request, timeout=60)
    expect_same(response, in_process, "serving_frames", inputs)


def test_output_filter(predictions, clips):
    request = predict_request("serving_frames", {"frames": clips[:1]})
    request.output_filter.append("classes")
    response = predictions.Predict(request, timeout=60)
    assert list(response.outputs) == ["classes"]
    assert tf.make_ndarray(response.outputs["classes"]).shape == (1, 5)


def test_metadata_and_status(channel, predictions):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL_NAME
    response = predictions.GetModelMetadata(request, timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value) == (MODEL_NAME, 1)
    defs = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(defs)
    frames = defs.signature_def["serving_frames"].inputs["frames"]
    assert frames.dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in frames.tensor_shape.dim] == [-1, FRAMES, -1, -1, 3]
    examples = defs.signature_def["serving_default"].inputs["examples"]
    assert examples.dtype == tf.string.as_datatype_enum

    models = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL_NAME
    (status,) = models.GetModelStatus(request, timeout=30).model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    request.model_spec.version.value = 3
    with pytest.raises(grpc.RpcError) as raised:
        models.GetModelStatus(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def _bad_requests():
    clip = np.zeros((1, FRAMES, 16, 16, 3), np.uint8)
    other_model = predict_request("serving_frames", {"frames": clip})
    other_model.model_spec.name = "other"
    labelled = predict_request("serving_frames", {"frames": clip})
    labelled.model_spec.version_label = "stable"
    unknown_output = predict_request("serving_frames", {"frames": clip})
    unknown_output.output_filter.append("logits")
    return {
        "unknown model": (other_model, grpc.StatusCode.NOT_FOUND, "'other' not found"),
        "unknown version": (
            predict_request("serving_frames", {"frames": clip}, version=7),
            grpc.StatusCode.NOT_FOUND,
            "version 7",
        ),
        "version label": (labelled, grpc.StatusCode.INVALID_ARGUMENT, "no version labels"),
        "unknown signature": (
            predict_request("nope", {"frames": clip}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "'nope' not found",
        ),
        "wrong input name": (
            predict_request("serving_frames", {"clips": clip}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "missing ['frames'], unexpected ['clips']",
        ),
        "wrong dtype": (
            predict_request("serving_frames", {"frames": clip.astype(np.float32)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "got DT_FLOAT, the signature takes DT_UINT8",
        ),
        "wrong frame count": (
            predict_request("serving_frames", {"frames": clip[:, :5]}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "got shape [1, 5, 16, 16, 3]",
        ),
        "not an example": (
            predict_request(None, {"examples": np.array([b"not an example"], dtype=object)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "rejected the input",
        ),
        "unknown output": (unknown_output, grpc.StatusCode.INVALID_ARGUMENT, "output_filter"),
        "over --max-body-mb": (
            predict_request(
                "serving_frames", {"frames": np.zeros((1, FRAMES, 256, 256, 3), np.uint8)}
            ),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "",
        ),
    }


@pytest.mark.parametrize("case", list(_bad_requests()))
def test_bad_request_gets_a_clear_status_and_server_keeps_serving(server, predictions, case):
    request, code, message = _bad_requests()[case]
    with pytest.raises(grpc.RpcError) as raised:
        predictions.Predict(request, timeout=60)
    assert raised.value.code() == code, raised.value.details()
    assert message in raised.value.details()
    assert server.alive()
    ok = predict_request("serving_frames", {"frames": np.zeros((1, FRAMES, 8, 8, 3), np.uint8)})
    assert predictions.Predict(ok, timeout=60).outputs


def test_metadata_needs_the_signature_def_field(predictions):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL_NAME
    with pytest.raises(grpc.RpcError) as raised:
        predictions.GetModelMetadata(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "signature_def" in raised.value.details()


def test_classify_is_not_offered(predictions):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL_NAME
    with pytest.raises(grpc.RpcError) as raised:
        predictions.Classify(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
