"""Warm-up records written with the export (TF Serving's format) and replayed by the server at
every batch size its batcher forms, before a version takes traffic."""

from __future__ import annotations

import collections
import json
import os
import shutil
import threading
import time

import grpc
import numpy as np
import tensorflow as tf
import uvicorn
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
)

from model import warmup
from serving import repository as repository_module
from serving.repository import ModelRepository
from serving.server import create_app
from tests.serving.contract_model import push
from tests.serving.helpers import MODEL_NAME, free_port, get_json, post_json

SIGNATURES = {"serving_default", "serving_frames"}


def test_records_are_tf_serving_prediction_logs_the_model_runs(exported_models, in_process):
    path = os.path.join(exported_models[0], "assets.extra", "tf_serving_warmup_requests")
    logs = [
        prediction_log_pb2.PredictionLog.FromString(record)
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator()
    ]
    requests = {log.predict_log.request.model_spec.signature_name: log for log in logs}
    assert set(requests) == SIGNATURES and len(logs) == 2
    for name, log in requests.items():
        request: predict_pb2.PredictRequest = log.predict_log.request
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        if name == "serving_default":
            (examples,) = inputs.values()
            assert examples.shape == (1,)
            example = tf.train.Example.FromString(examples[0])
            (jpeg,) = example.features.feature["frames"].bytes_list.value
            assert tf.io.decode_jpeg(jpeg).shape == (32, 32, 3)
        else:
            assert inputs["frames"].dtype == np.uint8
            assert inputs["frames"].shape == (1, 8, 32, 32, 3)
        outputs = in_process.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
        assert outputs["probabilities"].shape == (1, 6)


class ThreadedServer:
    """The app under uvicorn on loopback, in this process (so a test can watch the warm-up)."""

    def __init__(self, app):
        self.url = f"http://127.0.0.1:{free_port()}"
        port = int(self.url.rsplit(":", 1)[1])
        self.server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(30)


def states(url: str) -> list[tuple[str, str]]:
    status, body = get_json(url)
    assert status == 200, body
    return [(s["version"], s["state"]) for s in body["model_version_status"]]


def test_a_version_is_warmed_at_every_batch_size_before_it_is_served(
    exported_models, tmp_path, monkeypatch
):
    base = tmp_path / MODEL_NAME
    push(exported_models[0], base, 1)
    repository = ModelRepository(str(base), poll_interval_s=3600, batch_sizes=range(1, 4))
    calls = []  # (version warming up, version serving, signature, batch size)
    release = threading.Event()
    real_call = repository_module.call_signature

    def watching_call(signature, inputs):
        warming = repository.loading
        serving = repository.current.version if repository.current else None
        calls.append((warming, serving, signature.name, len(next(iter(inputs.values())))))
        if warming == 2:
            release.wait(120)  # holds version 2 in its warm-up while the test looks
        return real_call(signature, inputs)

    monkeypatch.setattr(repository_module, "call_signature", watching_call)
    grpc_target = f"127.0.0.1:{free_port()}"
    server = ThreadedServer(create_app(repository, max_batch=3, grpc_address=grpc_target))
    every_size = collections.Counter((s, b) for s in SIGNATURES for b in (1, 2, 3))
    try:
        # Version 1: replayed before the port answered (nothing served meanwhile).
        assert collections.Counter(c[2:] for c in calls if c[0] == 1) == every_size
        assert {c[1] for c in calls} == {None}
        model = f"{server.url}/v1/models/{MODEL_NAME}"

        push(exported_models[1], base, 2)
        poll = threading.Thread(target=repository.poll_once)
        poll.start()
        while not any(c[0] == 2 for c in calls):
            assert poll.is_alive(), "version 2 was not warmed up"
            time.sleep(0.02)
        assert states(f"{model}/versions/2") == [("2", "LOADING")]
        assert states(model) == [("1", "AVAILABLE"), ("2", "LOADING")]
        with grpc.insecure_channel(grpc_target) as channel:
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = MODEL_NAME
            request.model_spec.version.value = 2
            response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request)
            (status,) = response.model_version_status
            assert status.state == get_model_status_pb2.ModelVersionStatus.LOADING
        frames = np.zeros((1, 8, 16, 16, 3), np.uint8).tolist()
        body = json.dumps({"signature_name": "serving_frames", "instances": frames}).encode()
        status, answer = post_json(f"{model}/versions/2:predict", body)
        assert status == 503 and "still loading" in answer["error"]
        assert post_json(f"{model}:predict", body)[0] == 200  # version 1 answers meanwhile

        release.set()
        poll.join(120)
        assert states(f"{model}/versions/2") == [("2", "AVAILABLE")]
        assert states(model) == [("2", "AVAILABLE")]
        warmed = [c for c in calls if c[0] == 2]
        assert collections.Counter(c[2:] for c in warmed) == every_size
        assert {c[1] for c in warmed} == {1}  # version 1 served throughout
    finally:
        release.set()
        server.stop()


def test_a_version_whose_warm_up_fails_is_not_served(exported_models, tmp_path):
    base = tmp_path / MODEL_NAME
    push(exported_models[0], base, 1)
    broken = tmp_path / "broken"
    shutil.copytree(exported_models[1], broken)
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "serving_nope"
    request.inputs["frames"].CopyFrom(tf.make_tensor_proto(np.zeros([1, 8, 8, 8, 3], np.uint8)))
    log = prediction_log_pb2.PredictionLog(predict_log={"request": request})
    with tf.io.TFRecordWriter(str(broken / warmup.REQUESTS_FILE)) as writer:
        writer.write(log.SerializeToString())
    push(broken, base, 2)
    repository = ModelRepository(str(base), batch_sizes=(1, 2))
    assert repository.poll_once()
    assert repository.current.version == 1
    assert "version 2" in repository.last_error and "'serving_nope'" in repository.last_error
