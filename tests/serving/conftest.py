"""Serving fixtures: pushed model versions and the real server (`python -m serving`) on loopback.

`model_base_dir` is `<serving_dir>/<model_name>` with version 1 pushed (Pusher's layout). Its
model is tests/serving/contract_model.py's until the Trainer's export is served here instead.
"""

from __future__ import annotations

import os

import pytest

from tests.serving import contract_model
from tests.serving.helpers import (
    MODEL_NAME,
    Server,
)


@pytest.fixture(scope="session")
def exported_models(tmp_path_factory) -> list[str]:
    """Two SavedModels with the serving contract and different weights (versions to push)."""
    root = tmp_path_factory.mktemp("exports")
    return contract_model.save_contract_models([root / "first", root / "second"], variant=None)


@pytest.fixture(scope="session")
def model_base_dir(exported_models, tmp_path_factory) -> str:
    base = tmp_path_factory.mktemp("serving") / MODEL_NAME
    contract_model.push(exported_models[0], base, 1)
    return str(base)


@pytest.fixture(scope="session")
def in_process(model_base_dir):
    """Version 1 loaded in the test process: the reference the server's answers must equal."""
    import tensorflow as tf

    return tf.saved_model.load(os.path.join(model_base_dir, "1"))


@pytest.fixture(scope="session")
def server(model_base_dir, tmp_path_factory):
    """The server on version 1, with a 1 MiB request limit (so oversize bodies stay small)."""
    running = Server(
        model_base_dir, tmp_path_factory.mktemp("logs") / "server.log", "--max-body-mb", "1"
    )
    yield running
    running.stop()
