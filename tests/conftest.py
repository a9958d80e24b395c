"""Test-wide settings: the one Keras this project uses, and quiet TensorFlow logs.

Set before anything imports TensorFlow, exactly as the Makefile and the runners do.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tf.keras == tf_keras (Keras 2), as TFT and TFMA need.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
