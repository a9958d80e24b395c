"""Run as a fresh process: the Trainer's train() with a checkpoint every 3 steps, in RUN_DIR.

    python -m tests.model.resumable_training GRAPH TRAIN EVAL RUN_DIR OUT.json

The test kills it (SIGKILL) mid-training and starts it again on the same RUN_DIR. OUT.json:
the steps this process ran, both optimizers' iteration counters and the epochs it logged.
"""

from model import keras_env

keras_env.use_tf_keras()

import json  # noqa: E402
import sys  # noqa: E402

import tf_keras as keras  # noqa: E402

EPOCHS, EVERY = 3, 3
VARIANT = "micro"  # the smallest Video Swin: resuming does not depend on the model's depth


class CountSteps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        print(f"step {self.steps}", flush=True)


def main(graph: str, train_files: str, eval_files: str, run_dir: str, out: str) -> None:
    import tensorflow_transform as tft

    from model import train
    from tests.helpers import tiny_train_options

    options = tiny_train_options(
        epochs=EPOCHS, batch_size=8, checkpoint_every=EVERY, variant=VARIANT
    )
    counter = CountSteps()
    result = train.train(
        options,
        train_files,
        eval_files,
        tft.TFTransformOutput(graph),
        run_dir,
        callbacks=[counter],
    )
    model = result.model
    with open(out, "w") as f:
        json.dump(
            {
                "steps_run": counter.steps,
                "steps_per_epoch": result.steps_per_epoch,
                "head_iterations": int(model.optimizer.iterations.numpy()),
                "backbone_iterations": int(model.backbone_optimizer.iterations.numpy()),
                "epochs_logged": len(result.history["loss"]),
            },
            f,
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
