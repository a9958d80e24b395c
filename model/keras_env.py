"""The project's one Keras: tf_keras (Keras 2), chosen by TF_USE_LEGACY_KERAS=1 before TensorFlow
loads (TFX 1.16, TFT and TFMA are built on it; Keras 3 cannot load their models).

Python entry points call `use_tf_keras()` first; processes they start get `ENV`; the image's
Dockerfile and the Makefile set the same variable for everything else they run.
"""

from __future__ import annotations

import os
import sys

ENV = {"TF_USE_LEGACY_KERAS": "1"}


def use_tf_keras() -> None:
    """Selects tf_keras for this process; an error if TensorFlow already chose Keras 3."""
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1" and "tensorflow" in sys.modules:
        raise RuntimeError("TensorFlow was imported before TF_USE_LEGACY_KERAS=1 was set")
    os.environ.update(ENV)


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child process, with tf_keras selected."""
    return {**os.environ, **ENV, **extra}
