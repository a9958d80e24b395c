"""A process that holds a loaded SavedModel until Python exits (as each Beam worker of the
Evaluator does) exits without "Exception ignored in: AtomicFunction.__del__" tracebacks."""

import os
import subprocess
import sys

import pytest
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The model is kept by a module imported before TensorFlow (Beam's worker keeps it in its own
# caches), so it outlives TensorFlow's modules at teardown.
HOLD = """
import os, sys, tensorflow as tf
if sys.argv[2] == "guarded":
    import model.function_teardown
os.held = tf.saved_model.load(sys.argv[1])
print(float(os.held.f(tf.constant([1.5]))[0]))
"""


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    class Scale(tf.Module):
        def __init__(self):
            super().__init__()
            self.v = tf.Variable(2.0)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def f(self, x):
            return x * self.v

    path = str(tmp_path_factory.mktemp("teardown") / "model")
    tf.saved_model.save(Scale(), path)
    return path


def _exit_output(saved_model, mode):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", HOLD, saved_model, mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "3.0"
    return proc.stderr


def test_a_process_holding_a_model_exits_quietly(saved_model):
    assert "Exception ignored" not in _exit_output(saved_model, "guarded")


def test_without_the_guard_tensorflow_2_16_complains(saved_model):
    """What the guard is for; if this fails, TensorFlow finalizes quietly by itself now and
    model/function_teardown.py can go."""
    assert "AtomicFunction.__del__" in _exit_output(saved_model, "plain")
