"""The environment is exactly what requirements.lock pins, with the project's one Keras."""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _lock_pins(sections=("runtime", "gpu", "test-only")) -> dict[str, str]:
    """{name: version} of the lock's pins in `sections` (its `# <section> ...` headers)."""
    pins, section = {}, None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.startswith("# ") and line.split()[1] in ("runtime", "gpu", "test-only"):
            section = line.split()[1]
        elif line.strip() and not line.startswith("#") and section in sections:
            req = Requirement(line)
            pins[req.name.lower()] = next(iter(req.specifier)).version
    return pins


def _gpu_wheels_installed() -> bool:
    try:
        importlib.metadata.version("nvidia-cudnn-cu12")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_lock_pins_satisfy_pyproject():
    """requirements.lock was derived from the current pyproject.toml (else run `make lock`)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = project["dependencies"] + extras["test"] + extras["gpu"]
    pins = _lock_pins()
    for line in declared:
        req = Requirement(line)
        assert req.name.lower() in pins, f"{req.name} is declared but not locked"
        assert req.specifier.contains(pins[req.name.lower()]), (req, pins[req.name.lower()])


def test_installed_versions_match_the_lock():
    """The runtime and test-only pins; the gpu section too where make setup installed it."""
    gpu = ("gpu",) if _gpu_wheels_installed() else ()
    pins = _lock_pins(("runtime", "test-only", *gpu))
    assert len(pins) > 200, "the lock should pin the whole TFX stack"
    assert len(_lock_pins(("gpu",))) >= 10, "the lock should pin TensorFlow's CUDA wheels"
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


def test_entry_points_select_tf_keras_before_tensorflow_loads():
    """model/keras_env.py: the one place that selects tf_keras; too late is an error, not a
    silent Keras 3."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    code = (
        "import sys\n"
        "from model import keras_env\n"
        "keras_env.use_tf_keras()\n"
        "import tensorflow as tf\n"
        "assert tf.keras.Model.__module__.startswith('tf_keras.'), tf.keras.Model.__module__\n"
        "assert keras_env.child_env()['TF_USE_LEGACY_KERAS'] == '1'\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    late = "import tensorflow\nfrom model import keras_env\nkeras_env.use_tf_keras()\n"
    proc = subprocess.run(
        [sys.executable, "-c", late], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode != 0 and "imported before TF_USE_LEGACY_KERAS" in proc.stderr


def test_bytecode_was_compiled_at_install():
    import tensorflow

    init = Path(tensorflow.__file__)
    cached = init.parent / "__pycache__" / f"__init__.{sys.implementation.cache_tag}.pyc"
    assert cached.exists(), "make setup must compile bytecode (PYTHONDONTWRITEBYTECODE=1 here)"
