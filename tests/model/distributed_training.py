"""Run as a fresh process: the Trainer's train() under a real distribution strategy.

    python -m tests.model.distributed_training mirrored GRAPH TRAIN EVAL OUT.json
    TF_CONFIG=... python -m tests.model.distributed_training worker GRAPH TRAIN EVAL OUT.json

mirrored: two logical CPU devices (configured before TensorFlow initialises, hence a process of
its own); worker: one task of a MultiWorkerMirroredStrategy cluster named by TF_CONFIG. Writes
the history, the step count and a digest of the final weights to OUT.json.
"""

import os

from model import keras_env

keras_env.use_tf_keras()

import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# What is tested is the strategies' training loop, not the model: the smallest Video Swin (a
# deeper one only makes tracing the train step slower).
VARIANT = "micro"


def main(mode: str, graph: str, train_files: str, eval_files: str, out: str) -> None:
    import tensorflow_transform as tft

    from model import train
    from model.strategy import make_strategy
    from tests.helpers import tiny_train_options

    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
        )
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        # 5 clips a replica: a global batch of 10 does not divide the training clips.
        options = tiny_train_options(epochs=3, batch_size=5, variant=VARIANT)
    else:
        strategy = make_strategy("auto")  # TF_CONFIG names two workers
        options = tiny_train_options(epochs=2, batch_size=4, variant=VARIANT)
    result = train.train(
        options,
        train_files,
        eval_files,
        tft.TFTransformOutput(graph),
        os.path.join(os.path.dirname(out), f"run-{os.getpid()}"),
        strategy,
    )
    weights = result.model.classifier.get_weights()
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in weights))
    with open(out, "w") as f:
        json.dump(
            {
                "strategy": type(strategy).__name__,
                "multi_worker": isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy),
                "replicas": strategy.num_replicas_in_sync,
                "steps_per_epoch": result.steps_per_epoch,
                "train_examples": result.train_examples,
                "history": result.history,
                "iterations": int(result.model.optimizer.iterations.numpy()),
                "weights_sha256": digest.hexdigest(),
            },
            f,
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
