"""Helpers for tests.serving tests (plain module: pytest advises against importing conftest)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from model import keras_env

MODEL_NAME = "video_swin"


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 30.0) -> tuple[int, dict]:
    """(HTTP status, decoded JSON body), for error statuses too."""
    return request_json(urllib.request.Request(url), timeout)


def post_json(url: str, data: bytes, timeout: float = 60.0) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    return request_json(urllib.request.Request(url, data=data, headers=headers), timeout)


def request_json(request, timeout: float) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Server:
    """`python -m serving` in a subprocess: REST at `url`, gRPC at `grpc_target`, once a version
    is loaded."""

    def __init__(self, model_dir: str, log_path, *flags: str, wait: bool = True):
        self.port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.log_path = log_path
        env = keras_env.child_env(PYTHONPATH=REPO_ROOT)
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "serving",
                    "--model-dir",
                    model_dir,
                    "--port",
                    str(self.port),
                    "--grpc-port",
                    str(self.grpc_port),
                    *flags,
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            name = os.path.basename(model_dir)
            self.wait_until(lambda: get_json(f"{self.url}/v1/models/{name}", timeout=2)[0] == 200)

    def wait_until(self, ready, timeout: float = 180.0) -> None:
        """Polls `ready()` (connection errors count as not yet) while the server runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log()}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
