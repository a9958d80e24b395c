"""The environment is exactly what requirements.lock pins, with the project's one Keras."""

import importlib.metadata
import os
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _lock_pins() -> dict[str, str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    reqs = [Requirement(ln) for ln in lines if ln.strip() and not ln.startswith("#")]
    return {r.name.lower(): next(iter(r.specifier)).version for r in reqs}


def test_lock_pins_satisfy_pyproject():
    """requirements.lock was derived from the current pyproject.toml (else run `make lock`)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    pins = _lock_pins()
    for line in declared:
        req = Requirement(line)
        assert req.name.lower() in pins, f"{req.name} is declared but not locked"
        assert req.specifier.contains(pins[req.name.lower()]), (req, pins[req.name.lower()])


def test_installed_versions_match_the_lock():
    pins = _lock_pins()
    assert len(pins) > 200, "the lock should pin the whole TFX stack"
    mismatched = {}
    for name, version in pins.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        # torch wheels carry a local version label (2.14.1+cu130); the public part must match.
        if installed is None or installed.split("+")[0] != version:
            mismatched[name] = (version, installed)
    assert not mismatched, f"installed packages differ from requirements.lock: {mismatched}"


def test_one_keras_everywhere():
    """tf.keras is tf_keras (Keras 2) before and after tensorflow_transform is imported."""
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    import tensorflow as tf
    import tf_keras

    before = tf.keras.layers.Dense
    import tensorflow_transform  # noqa: F401  (sets TF_USE_LEGACY_KERAS itself if unset)

    assert tf.keras.layers.Dense is before is tf_keras.layers.Dense
    assert tf.keras.Model.__module__.startswith("tf_keras.")


def test_bytecode_was_compiled_at_install():
    import tensorflow

    init = Path(tensorflow.__file__)
    cached = init.parent / "__pycache__" / f"__init__.{sys.implementation.cache_tag}.pyc"
    assert cached.exists(), "make setup must compile bytecode (PYTHONDONTWRITEBYTECODE=1 here)"
