"""The environment is exactly what uv.lock pins, with the project's one Keras."""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).with_name("uv")


def _locked_requirements() -> list[Requirement]:
    """Every pin of uv.lock (runtime + test extra) that applies to this interpreter."""
    exported = subprocess.run(
        [str(UV), "export", "--frozen", "--extra", "test", "--no-hashes", "--no-emit-project"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [ln.split("#")[0].strip() for ln in exported.splitlines()]
    reqs = [Requirement(ln) for ln in lines if ln and not ln.startswith("-")]
    return [r for r in reqs if r.marker is None or r.marker.evaluate()]


def test_lock_is_derived_from_pyproject():
    # --check fails when pyproject.toml changed without re-running `make lock`.
    subprocess.run([str(UV), "lock", "--check", "--offline"], cwd=ROOT, check=True)


def test_installed_versions_match_the_lock():
    reqs = _locked_requirements()
    assert len(reqs) > 200, "the export should list the whole TFX stack"
    mismatched = {}
    for req in reqs:
        (pin,) = req.specifier
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or canonicalize_name(installed) != canonicalize_name(pin.version):
            # torch wheels carry a local version label (2.14.1+cu130); the public part must match.
            if installed is None or installed.split("+")[0] != pin.version:
                mismatched[req.name] = (pin.version, installed)
    assert not mismatched, f"installed packages differ from uv.lock: {mismatched}"


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
