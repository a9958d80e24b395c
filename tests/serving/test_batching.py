"""Concurrent requests merged into one model call; a bad request fails alone."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time

import numpy as np
import pytest
import tensorflow as tf

from data import example_proto, features, synthetic, video
from serving.batching import Batcher
from serving.repository import call_signature, load_version


@pytest.fixture(scope="module")
def signatures(model_base_dir):
    return load_version(model_base_dir, 1).signatures


class Counting:
    """The real signature function, recording the batch size of every call."""

    def __init__(self, function):
        self.function, self.sizes = function, []

    def __call__(self, **inputs):
        self.sizes.append(len(next(iter(inputs.values()))))
        return self.function(**inputs)


def run_batched(signature, requests: list[dict], max_batch: int) -> tuple[list, list[int]]:
    """Queues every request before the batcher starts (so batching is deterministic); returns
    (each request's outputs or exception, the model calls' batch sizes)."""
    counting = Counting(signature.function)
    signature = dataclasses.replace(signature, function=counting)
    batcher = Batcher(max_batch, threads=1, start=False)
    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        futures = []
        for request in requests:  # one at a time: the queue keeps the submission order
            futures.append(pool.submit(batcher, signature, request))
            while batcher.queued() < len(futures):
                time.sleep(0.001)
        batcher.start()
        results = [f.exception() or f.result() for f in futures]
    batcher.close()
    return results, counting.sizes


def clip(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_compatible_requests_share_one_call(signatures):
    signature = signatures["serving_frames"]
    small, large = (8, 24, 24, 3), (8, 40, 32, 3)
    requests = [
        {"frames": clip((1, *small), 0)},
        {"frames": clip((1, *large), 1)},
        {"frames": clip((2, *small), 2)},
        {"frames": clip((1, *large), 3)},
        {"frames": clip((1, *small), 4)},
    ]
    results, sizes = run_batched(signature, requests, max_batch=8)
    assert sizes == [4, 2]  # the three small-frame requests, then the two large-frame ones
    for request, result in zip(requests, results, strict=True):
        alone = call_signature(signature, request)
        for name in ("probabilities", "scores"):
            np.testing.assert_allclose(result[name], alone[name], atol=1e-5)
        np.testing.assert_array_equal(result["classes"], alone["classes"])


def test_max_batch_is_respected(signatures):
    requests = [{"frames": clip((1, 8, 16, 16, 3), i)} for i in range(5)]
    _, sizes = run_batched(signatures["serving_frames"], requests, max_batch=2)
    assert sizes == [2, 2, 1]


def test_a_bad_request_fails_alone(signatures):
    frames = [video.encode_jpeg(f) for f in synthetic.render_clip("PulseSlow", [0], [0])]
    good = example_proto.make_example({features.FRAMES: frames})
    requests = [
        {"examples": np.array([good], dtype=object)},
        {"examples": np.array([b"not an example"], dtype=object)},
        {"examples": np.array([good], dtype=object)},
    ]
    results, sizes = run_batched(signatures["serving_default"], requests, max_batch=8)
    assert sizes == [3, 1, 1, 1]  # the merged call failed; each request then ran alone
    assert isinstance(results[1], tf.errors.InvalidArgumentError)
    alone = call_signature(signatures["serving_default"], requests[0])
    for result in (results[0], results[2]):
        np.testing.assert_allclose(result["probabilities"], alone["probabilities"], atol=1e-5)
