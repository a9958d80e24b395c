"""A server started before any version exists, a version pushed later, and model-side errors."""

from __future__ import annotations

import json
import urllib.request

import tensorflow as tf

from tests.serving.contract_model import push
from tests.serving.helpers import MODEL_NAME, Server, get_json, post_json, request_json


class UnevenOutputs(tf.Module):
    """Outputs of different batch sizes: fine column-wise, impossible to split into rows."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        return {"doubled": 2.0 * x, "total": tf.reduce_sum(x, keepdims=True)}


def test_empty_model_dir_then_push_then_model_error(tmp_path):
    export = str(tmp_path / "export")
    module = UnevenOutputs()
    tf.saved_model.save(module, export, signatures={"serving_default": module.serve})
    base = tmp_path / "uneven"
    server = Server(str(base), tmp_path / "server.log", "--poll-interval", "0.1", wait=False)
    try:
        server.wait_until(lambda: get_json(f"{server.url}/v1/models/uneven", timeout=2)[0] == 503)
        status, body = post_json(f"{server.url}/v1/models/uneven:predict", b'{"instances": [1.0]}')
        assert status == 503 and "no loaded version yet" in body["error"]

        push(export, base, 7)
        server.wait_until(lambda: get_json(f"{server.url}/v1/models/uneven", timeout=2)[0] == 200)
        url = f"{server.url}/v1/models/uneven/versions/7:predict"
        status, body = post_json(url, json.dumps({"instances": [1.0, 2.0]}).encode())
        assert status == 500 and "outputs differ in batch size" in body["error"]
        status, body = post_json(url, json.dumps({"inputs": [1.0, 2.0]}).encode())
        assert (status, body) == (200, {"outputs": {"doubled": [2.0, 4.0], "total": [3.0]}})
        assert server.alive()
    finally:
        server.stop()


def test_other_http_methods_are_405(server):
    request = urllib.request.Request(f"{server.url}/v1/models/{MODEL_NAME}", method="DELETE")
    status, body = request_json(request, timeout=30)
    assert status == 405 and "GET or POST" in body["error"]
