"""The server on the model the pipeline itself trained, blessed and pushed (not a stand-in)."""

from __future__ import annotations

import base64
import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from data import synthetic
from data.ingest import IngestOptions
from serving import client
from tests.serving.helpers import Server, get_json, post_json

pytestmark = pytest.mark.slow  # needs the pipeline run

EMBEDDED = IngestOptions(frame_stride=1, max_frames=64)  # how the embedded set was ingested


@pytest.fixture(scope="module")
def pushed(pipeline_run, tmp_path_factory):
    base = pipeline_run["serving_dir"]
    server = Server(base, tmp_path_factory.mktemp("logs") / "pushed.log")
    (version,) = os.listdir(base)
    yield server, os.path.basename(base), version
    server.stop()


def test_status_metadata_and_both_signatures(pushed, tmp_path):
    server, name, version = pushed
    status, body = get_json(f"{server.url}/v1/models/{name}")
    assert status == 200
    assert body["model_version_status"][0]["version"] == version
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    status, meta = get_json(f"{server.url}/v1/models/{name}/metadata")
    signatures = meta["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "serving_frames"} <= set(signatures)
    assert signatures["serving_default"]["inputs"]["examples"]["dtype"] == "DT_STRING"

    path = tmp_path / "v_ShiftDown_g01_c01.avi"
    synthetic.write_video(path, synthetic.render_clip("ShiftDown", [9], [9, 1]), synthetic.SPEC.fps)
    example = client.video_example(str(path), EMBEDDED)
    body = json.dumps({"instances": [{"b64": base64.b64encode(example).decode()}]}).encode()
    status, out = post_json(f"{server.url}/v1/models/{name}:predict", body)
    assert status == 200, out
    (prediction,) = out["predictions"]
    assert set(prediction["classes"]) <= set(synthetic.SPEC.classes)
    assert abs(sum(prediction["probabilities"]) - 1.0) < 1e-4

    frames = np.zeros((1, 8, 40, 48, 3), np.uint8).tolist()
    body = json.dumps({"signature_name": "serving_frames", "inputs": {"frames": frames}}).encode()
    status, out = post_json(f"{server.url}/v1/models/{name}:predict", body)
    assert status == 200, out
    assert np.asarray(out["outputs"]["probabilities"]).shape == (1, len(synthetic.SPEC.classes))


def test_client_on_a_real_video_matches_the_model_in_process(pushed, pipeline_run, tmp_path):
    server, name, version = pushed
    path = tmp_path / "v_PulseFast_g02_c03.avi"
    synthetic.write_video(path, synthetic.render_clip("PulseFast", [2], [2, 3]), synthetic.SPEC.fps)
    answer = client.predict_video(str(path), server.url, name, EMBEDDED)
    model = tf.saved_model.load(os.path.join(pipeline_run["serving_dir"], version))
    local = model.signatures["serving_default"](
        examples=tf.constant([client.video_example(str(path), EMBEDDED)])
    )
    names = [c.decode() for c in local["classes"].numpy()[0]]
    assert [c for c, _ in answer.top] == names
    np.testing.assert_allclose([p for _, p in answer.top], local["scores"].numpy()[0], atol=1e-5)


def test_the_pushed_export_carries_warm_up_records(pushed, pipeline_run):
    """The Trainer's export writes TF Serving's warm-up records: one request per signature,
    which TF Serving, KServe and this server replay before the version takes traffic."""
    from model import warmup

    server, name, version = pushed
    requests = warmup.read_requests(os.path.join(pipeline_run["serving_dir"], version))
    assert sorted(signature for signature, _ in requests) == [
        "ingest_settings",
        "serving_default",
        "serving_frames",
        "serving_views",
    ]


def test_client_asks_for_the_evaluation_views(pushed, pipeline_run, tmp_path):
    """--views: serving_views' average over the clips x crops the model was evaluated on (the
    test pipeline's 3 clips), one view staying the default."""
    server, name, version = pushed
    path = tmp_path / "v_ShiftLeft_g01_c02.avi"
    synthetic.write_video(path, synthetic.render_clip("ShiftLeft", [5], [1, 2]), synthetic.SPEC.fps)
    example = tf.constant([client.video_example(str(path), EMBEDDED)])
    model = tf.saved_model.load(os.path.join(pipeline_run["serving_dir"], version))
    local = model.signatures["serving_views"](examples=example)
    answer = client.predict_video(str(path), server.url, name, EMBEDDED, views=True)
    np.testing.assert_allclose(answer.probabilities, local["probabilities"].numpy()[0], atol=1e-5)
    one_view = model.signatures["serving_default"](examples=example)["probabilities"].numpy()[0]
    np.testing.assert_allclose(local["single_view_probabilities"].numpy()[0], one_view, atol=1e-5)
    default = client.predict_video(str(path), server.url, name, EMBEDDED)
    np.testing.assert_allclose(default.probabilities, one_view, atol=1e-5)


def test_the_client_decodes_as_the_model_was_ingested(pushed, tmp_path, capsys):
    """The model records how its training videos were decoded; the client reads it from the
    model (no flags) and gives what the same settings give explicitly; a flag still overrides."""
    from pipeline import configs

    server, name, _ = pushed
    assert client.model_ingest_options(server.url, name) == configs.SYNTHETIC_INGEST_OPTIONS
    path = tmp_path / "v_PulseSlow_g03_c01.avi"
    synthetic.write_video(path, synthetic.render_clip("PulseSlow", [4], [3, 1]), synthetic.SPEC.fps)
    explicit = client.predict_video(str(path), server.url, name, EMBEDDED)
    assert client.main(["--video", str(path), "--url", server.url, "--model", name]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in printed] == [c for c, _ in explicit.top]
    # Ingestion's real-data stride (2) instead of the recorded 1: another sampling, as asked.
    strided = client.predict_video(
        str(path), server.url, name, dataclasses.replace(EMBEDDED, frame_stride=2)
    )
    argv = ["--video", str(path), "--url", server.url, "--model", name, "--frame-stride", "2"]
    assert client.main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [float(line.split()[2]) for line in printed] == pytest.approx(
        [p for _, p in strided.top], abs=1e-4
    )
