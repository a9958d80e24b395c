"""The video-file client against the real server, on a real encoded video."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data import synthetic
from data.ingest import IngestOptions
from serving import client
from tests.serving.helpers import MODEL_NAME, REPO_ROOT

OPTIONS = IngestOptions(frame_stride=1, max_frames=64)  # the embedded set's ingestion
CLI_OPTIONS = ["--frame-stride", "1", "--max-frames", "64"]


@pytest.fixture(scope="module")
def video_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("videos") / "v_ShiftUp_g01_c01.avi"
    synthetic.write_video(path, synthetic.render_clip("ShiftUp", [3], [4]), synthetic.SPEC.fps)
    return str(path)


@pytest.fixture(scope="module")
def expected(in_process, video_path) -> dict:
    """What the model answers in-process for the example the client builds."""
    example = client.video_example(video_path, OPTIONS)
    outputs = in_process.signatures["serving_default"](examples=tf.constant([example]))
    return {k: v.numpy()[0] for k, v in outputs.items()}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    command = [sys.executable, "-m", "serving.client", *args]
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_video_example_holds_every_sampled_frame(video_path):
    parsed = tf.io.parse_single_example(
        client.video_example(video_path, OPTIONS), {"frames": tf.io.VarLenFeature(tf.string)}
    )
    frames = tf.sparse.to_dense(parsed["frames"]).numpy()
    assert len(frames) == synthetic.SPEC.num_frames
    assert tf.io.decode_jpeg(frames[0]).shape == (synthetic.SPEC.height, synthetic.SPEC.width, 3)


def test_predict_video(server, video_path, expected):
    prediction = client.predict_video(video_path, server.url, MODEL_NAME, OPTIONS)
    assert [name for name, _ in prediction.top] == [c.decode() for c in expected["classes"]]
    np.testing.assert_allclose([s for _, s in prediction.top], expected["scores"], atol=1e-6)
    np.testing.assert_allclose(prediction.probabilities, expected["probabilities"], atol=1e-6)


def test_cli_prints_top5(server, video_path, expected):
    result = run_cli(
        "--video", video_path, "--url", server.url, "--model", MODEL_NAME, *CLI_OPTIONS
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split() for line in lines] == [
        [f"{rank}.", name.decode(), f"{score:.4f}"]
        for rank, (name, score) in enumerate(
            zip(expected["classes"], expected["scores"], strict=True), 1
        )
    ]


def test_cli_errors_name_the_problem(server, video_path, tmp_path):
    missing = run_cli(
        "--video", str(tmp_path / "none.avi"), "--url", server.url, "--model", MODEL_NAME
    )
    assert missing.returncode == 1 and "none.avi: file not found" in missing.stderr
    unknown = run_cli("--video", video_path, "--url", server.url, "--model", "other")
    assert (
        unknown.returncode == 1
        and "HTTP 404" in unknown.stderr
        and "'other' not found" in unknown.stderr
    )
