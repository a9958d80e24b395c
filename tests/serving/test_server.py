"""The real server on loopback: TF Serving's status, metadata and predict shapes, bad requests."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from data import example_proto, features, synthetic, video
from tests.serving.helpers import MODEL_NAME, get_json, post_json

FRAMES = 8  # the contract model's T


@pytest.fixture(scope="module")
def examples() -> list[bytes]:
    """Two serialized examples (`frames` only) of different classes, 40 and 12 frames."""
    out = []
    for name, count in (("ShiftLeft", 40), ("PulseFast", 12)):
        clip = synthetic.render_clip(name, [0], [1])[:count]
        out.append(
            example_proto.make_example({features.FRAMES: [video.encode_jpeg(f) for f in clip]})
        )
    return out


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (2, FRAMES, 40, 48, 3), dtype=np.uint8)


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def predict_url(server, version=None) -> str:
    middle = f"/versions/{version}" if version is not None else ""
    return f"{server.url}/v1/models/{MODEL_NAME}{middle}:predict"


def test_status(server):
    assert get_json(f"{server.url}/v1/models/{MODEL_NAME}") == (
        200,
        {
            "model_version_status": [
                {
                    "version": "1",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        },
    )
    assert get_json(f"{server.url}/v1/models/{MODEL_NAME}/versions/1")[0] == 200


def test_metadata(server):
    status, body = get_json(f"{server.url}/v1/models/{MODEL_NAME}/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": MODEL_NAME, "signature_name": "", "version": "1"}
    assert get_json(f"{server.url}/v1/models/{MODEL_NAME}/versions/1/metadata") == (status, body)
    defs = body["metadata"]["signature_def"]["signature_def"]

    def spec(tensor):
        return tensor["dtype"], [int(d["size"]) for d in tensor["tensor_shape"]["dim"]]

    default, frames = defs["serving_default"], defs["serving_frames"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert spec(default["inputs"]["examples"]) == ("DT_STRING", [-1])
    assert spec(frames["inputs"]["frames"]) == ("DT_UINT8", [-1, FRAMES, -1, -1, 3])
    for signature in (default, frames):
        outputs = {name: spec(t) for name, t in signature["outputs"].items()}
        assert outputs == {
            "probabilities": ("DT_FLOAT", [-1, 6]),
            "classes": ("DT_STRING", [-1, 5]),
            "scores": ("DT_FLOAT", [-1, 5]),
        }


def _expected(in_process, signature: str, batch) -> dict:
    name = "examples" if signature == "serving_default" else "frames"
    outputs = in_process.signatures[signature](**{name: tf.constant(batch)})
    return {k: v.numpy() for k, v in outputs.items()}


def _check(outputs: dict, expected: dict) -> None:
    assert set(outputs) == {"probabilities", "classes", "scores"}
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], atol=1e-6)
    np.testing.assert_allclose(outputs["scores"], expected["scores"], atol=1e-6)
    assert outputs["classes"] == [[c.decode() for c in row] for row in expected["classes"]]


@pytest.mark.parametrize("signature", ["serving_default", "serving_frames"])
@pytest.mark.parametrize("row_format", [True, False], ids=["instances", "inputs"])
def test_predict(server, in_process, examples, clips, signature, row_format):
    if signature == "serving_default":
        batch, values = examples, [b64(e) for e in examples]
    else:
        batch, values = clips, clips.tolist()
    if row_format:
        request = {"signature_name": signature, "instances": values}
    else:
        name = "examples" if signature == "serving_default" else "frames"
        request = {"signature_name": signature, "inputs": {name: values}}
    status, body = post_json(predict_url(server), json.dumps(request).encode())
    assert status == 200, body
    if row_format:
        rows = body["predictions"]
        assert len(rows) == 2
        outputs = {k: [row[k] for row in rows] for k in rows[0]}
    else:
        outputs = body["outputs"]
    _check(outputs, _expected(in_process, signature, batch))


def test_predict_versioned_path_and_default_signature(server, in_process, examples):
    request = json.dumps({"instances": [b64(examples[0])]}).encode()
    status, body = post_json(predict_url(server, version=1), request)
    assert status == 200, body
    (row,) = body["predictions"]
    _check({k: [v] for k, v in row.items()}, _expected(in_process, "serving_default", examples[:1]))


def _frames_request(value) -> bytes:
    return json.dumps({"signature_name": "serving_frames", "instances": [value]}).encode()


CLIP = np.zeros((FRAMES, 4, 4, 3), np.uint8).tolist()
BAD_REQUESTS = {
    "bad JSON": (400, None, b'{"instances": [', "not valid JSON"),
    "not an object": (400, None, b"[1, 2]", "JSON object"),
    "neither instances nor inputs": (
        400,
        None,
        b'{"signature_name": "serving_default"}',
        "exactly one",
    ),
    "both instances and inputs": (
        400,
        None,
        b'{"instances": ["a"], "inputs": ["a"]}',
        "exactly one",
    ),
    "empty instances": (400, None, b'{"instances": []}', "non-empty list"),
    "unknown field": (400, None, b'{"instances": ["a"], "extra": 1}', "unknown request fields"),
    "unknown signature": (
        400,
        None,
        b'{"signature_name": "nope", "instances": ["a"]}',
        "'nope' not found",
    ),
    "wrong input name": (400, None, b'{"inputs": {"frames": ["a"]}}', "missing ['examples']"),
    "wrong rank": (400, None, _frames_request(CLIP[0]), "got shape [1, 4, 4, 3]"),
    "wrong frame count": (400, None, _frames_request(CLIP[:5]), "got shape [1, 5, 4, 4, 3]"),
    "ragged": (400, None, _frames_request([CLIP[0], CLIP[1][:2]] * 4), "rectangular"),
    "float for uint8": (400, None, _frames_request((np.array(CLIP) + 0.5).tolist()), "DT_UINT8"),
    "out of uint8 range": (
        400,
        None,
        _frames_request((np.array(CLIP) + 300).tolist()),
        "outside the range",
    ),
    "string for uint8": (400, None, _frames_request("frames"), "DT_UINT8"),
    "number for string": (400, None, b'{"instances": [3]}', "DT_STRING"),
    "invalid base64": (400, None, b'{"instances": [{"b64": "not base64!"}]}', "invalid base64"),
    "not an example": (400, None, b'{"instances": [{"b64": "AAAA"}]}', "rejected the input"),
    "unknown model": (
        404,
        "/v1/models/other:predict",
        b'{"instances": ["a"]}',
        "'other' not found",
    ),
    "unknown version": (
        404,
        f"/v1/models/{MODEL_NAME}/versions/7:predict",
        b'{"instances": ["a"]}',
        "version 7",
    ),
    "non-numeric version": (
        400,
        f"/v1/models/{MODEL_NAME}/versions/x:predict",
        b"{}",
        "must be a number",
    ),
    "unsupported method": (
        400,
        f"/v1/models/{MODEL_NAME}:classify",
        b"{}",
        "'classify' is not supported",
    ),
    "unknown path": (404, "/v2/models/x/infer", b"{}", "no such path"),
    "oversize body": (
        413,
        None,
        b'{"instances": ["' + b"a" * (2 << 20) + b'"]}',
        "exceeds the limit",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_is_4xx_and_server_keeps_serving(server, case):
    expected_status, path, data, message = BAD_REQUESTS[case]
    url = server.url + path if path else predict_url(server)
    status, body = post_json(url, data)
    assert (status, set(body)) == (expected_status, {"error"}), body
    assert message in body["error"]
    assert server.alive()
    assert get_json(f"{server.url}/v1/models/{MODEL_NAME}")[0] == 200


def test_unknown_model_status_is_404(server):
    status, body = get_json(f"{server.url}/v1/models/other")
    assert status == 404 and "'other' not found" in body["error"]


def test_oversize_with_expect_continue_is_refused_before_the_body(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", f"/v1/models/{MODEL_NAME}:predict")
    connection.putheader("Content-Length", str(64 << 20))
    connection.putheader("Expect", "100-continue")
    connection.endheaders()  # no body follows: the answer must come anyway
    response = connection.getresponse()
    assert response.status == 413 and "exceeds the limit" in json.loads(response.read())["error"]
    connection.close()
    assert get_json(f"{server.url}/v1/models/{MODEL_NAME}")[0] == 200


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("GET", f"/v1/models/{MODEL_NAME}:predict", "POST"),
        ("POST", f"/v1/models/{MODEL_NAME}/versions/1/metadata", "GET"),
        ("PUT", f"/v1/models/{MODEL_NAME}", "GET"),
    ],
)
def test_a_wrong_method_on_a_served_path_is_405(server, method, path, allowed):
    data = b"{}" if method != "GET" else None
    request = urllib.request.Request(server.url + path, data=data, method=method)
    try:
        urllib.request.urlopen(request, timeout=30)
        pytest.fail("no error status")
    except urllib.error.HTTPError as error:
        assert (error.code, error.headers["Allow"]) == (405, allowed)
        assert f"takes {allowed}" in json.loads(error.read())["error"]


def test_the_api_is_documented(server):
    with urllib.request.urlopen(f"{server.url}/docs", timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
    status, spec = get_json(f"{server.url}/openapi.json")
    assert status == 200
    paths = spec["paths"]
    for base in ("/v1/models/{name}", "/v1/models/{name}/versions/{version}"):
        assert set(paths[base]) == {"get"}
        assert set(paths[base + "/metadata"]) == {"get"}
        assert set(paths[base + ":predict"]) == {"post"}
        assert "application/json" in paths[base + ":predict"]["post"]["requestBody"]["content"]
