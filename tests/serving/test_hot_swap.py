"""A newly pushed version replaces the served one while requests run; half-written ones never load."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time

import numpy as np
import pytest

from tests.serving.contract_model import push
from tests.serving.helpers import MODEL_NAME, Server, get_json, post_json

REQUEST = json.dumps(
    {
        "signature_name": "serving_frames",
        "instances": [np.random.default_rng(1).integers(0, 256, (8, 24, 24, 3)).tolist()],
    }
).encode()


class Load:
    """Threads posting the same request back to back until stopped; records every answer."""

    def __init__(self, url: str, threads: int = 4):
        self.url, self.answers, self.failures = url, [], []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                status, body = post_json(self.url, REQUEST)
            except Exception as error:  # a dropped connection counts as a failed request
                self.failures.append(repr(error))
                continue
            if status == 200:
                self.answers.append(body["predictions"][0]["probabilities"])
            else:
                self.failures.append((status, body))

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join()


def wait_for_version(server, version: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body = get_json(f"{server.url}/v1/models/{MODEL_NAME}")
        if body["model_version_status"][0]["version"] == str(version):
            return
        time.sleep(0.1)
    pytest.fail(f"version {version} not served after {timeout} s:\n{server.log()}")


def wait_for_log(server, text: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log():
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} not logged after {timeout} s:\n{server.log()}")
        time.sleep(0.1)


def served_version(server) -> str:
    return get_json(f"{server.url}/v1/models/{MODEL_NAME}")[1]["model_version_status"][0]["version"]


def answer(server) -> list[float]:
    status, body = post_json(f"{server.url}/v1/models/{MODEL_NAME}:predict", REQUEST)
    assert status == 200, body
    return body["predictions"][0]["probabilities"]


def test_hot_swap_under_load(exported_models, tmp_path):
    first, second = exported_models
    base = tmp_path / MODEL_NAME
    push(first, base, 1)
    server = Server(str(base), tmp_path / "server.log", "--poll-interval", "0.1")
    load = None
    try:
        before = answer(server)
        load = Load(f"{server.url}/v1/models/{MODEL_NAME}:predict")
        # Version 3 half-copied by the Pusher (saved_model.pb comes last): never loaded.
        shutil.copytree(second, base / "3", ignore=shutil.ignore_patterns("saved_model.pb"))
        # Version 4 copied in the wrong order, its variables not yet there: tried, refused.
        shutil.copytree(second, base / "4", ignore=shutil.ignore_patterns("variables.*"))
        wait_for_log(server, "not loaded: version 4")  # the refused load is reported
        assert served_version(server) == "1"

        push(second, base, 2)
        wait_for_version(server, 2)
        after = answer(server)
        assert not np.allclose(after, before)  # the new weights answer now

        shutil.copy(os.path.join(second, "saved_model.pb"), base / "3")  # copy completed
        wait_for_version(server, 3)
        for name in os.listdir(os.path.join(second, "variables")):  # copy completed
            shutil.copy(os.path.join(second, "variables", name), base / "4" / "variables")
        wait_for_version(server, 4)
        time.sleep(0.5)
        load.stop()
        assert load.failures == []
        assert load.answers
        seen = {tuple(np.round(a, 5)) for a in load.answers}
        assert seen <= {tuple(np.round(before, 5)), tuple(np.round(after, 5))}
        assert len(seen) == 2  # requests ran on both sides of the swap
        assert server.alive()
    finally:
        if load:
            load.stop()
        server.stop()
