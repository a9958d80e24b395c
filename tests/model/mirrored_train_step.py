"""Run as a fresh process: one Keras train step of a micro Video Swin under MirroredStrategy.

Logical CPU devices must be configured before TensorFlow initialises, so this cannot run in the
pytest process (see test_distributed.py). Prints 'OK <loss>' on success.
"""

from model import keras_env

keras_env.use_tf_keras()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from model.video_swin import build_classifier  # noqa: E402


def main() -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    shape = (4, 32, 40, 3)
    with strategy.scope():
        model = build_classifier("micro", 3, shape, recompute=True)
        model.compile(
            optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.05),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    before = [w.numpy().copy() for w in model.trainable_weights]
    rng = np.random.default_rng(0)
    clips = rng.standard_normal((4, *shape)).astype(np.float32)
    labels = np.array([0, 1, 2, 1])
    history = model.fit(clips, labels, batch_size=4, epochs=1, verbose=0)
    loss = history.history["loss"][0]
    assert np.isfinite(loss), loss
    changed = sum(
        not np.array_equal(a, b.numpy())
        for a, b in zip(before, model.trainable_weights, strict=True)
    )
    assert changed == len(before), f"only {changed}/{len(before)} weights were updated"
    print(f"OK {loss:.4f}")


if __name__ == "__main__":
    main()
