"""Converted models as TF Hub modules: the Reusable SavedModel object and its model card.

A Reusable SavedModel (https://www.tensorflow.org/hub/reusable_saved_models) is a SavedModel whose
root object has `__call__(inputs, training=False)`, `variables`, `trainable_variables` and
`regularization_losses`, so `hub.KerasLayer(dir, trainable=True)` can fine-tune it. The
signatures (TF Serving's view) live on the same object.
"""

from __future__ import annotations

import os
import sys
import types
import warnings

import tensorflow as tf

from model.clip import MEAN_RGB, STD_RGB

MODEL_CARD = "README.md"
BACKBONE_DIR = "backbone"


def import_tensorflow_hub():
    """`import tensorflow_hub` (0.15, the version TFX 1.16 pins) under TensorFlow >= 2.16.

    tensorflow_hub 0.15's __init__ imports `tensorflow.compat.v1.estimator` for its TF1 Estimator
    exporter; TF 2.16 removed Estimator and tensorflow-estimator 2.15 no longer imports with it,
    while hub 0.16 (which dropped the import) is outside TFX 1.16's `<0.16` pin. Hub's Estimator
    API is unusable on TF 2.16 anyway, so an absent module is replaced by a stand-in whose
    Exporter says so when used; everything TF2 (KerasLayer, load, resolve) works unchanged.
    """
    name = "tensorflow.compat.v1.estimator"
    try:
        from tensorflow.compat.v1 import estimator  # noqa: F401
    except ImportError:
        if name not in sys.modules:
            stub = types.ModuleType(name, "Stand-in: TF >= 2.16 has no Estimator.")

            class Exporter:
                def __init__(self, *args, **kwargs):
                    raise NotImplementedError(
                        "tf.estimator was removed in TensorFlow 2.16; hub's Estimator exporters "
                        "cannot be used"
                    )

            stub.Exporter = Exporter
            sys.modules[name] = stub
    with warnings.catch_warnings():  # hub 0.15 still imports pkg_resources (setuptools<81 has it)
        warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
        import tensorflow_hub

    return tensorflow_hub


def reusable_module(model, input_shape) -> tf.Module:
    """Trackable root object for tf.saved_model.save: `__call__(clips, training=False)`.

    model: a Keras model over float32 clips [B, *input_shape]; a dict output (the backbone's)
    is reduced to its 'features' map. Both training modes are traced, so fine-tuning applies
    dropout and stochastic depth as the Keras model does.
    """
    spec = tf.TensorSpec([None, *input_shape], tf.float32, name="clips")

    # Without AutoGraph: the model has no tensor-dependent Python control flow, and converting
    # every Keras layer's call was most of the export's time (about 5 s a trace of a tiny model).
    @tf.function(autograph=False)
    def call(inputs, training=False):
        outputs = model(inputs, training=training)
        return outputs["features"] if isinstance(outputs, dict) else outputs

    for training in (False, True):
        call.get_concrete_function(spec, training=training)
    root = tf.train.Checkpoint()  # a plain trackable whose `variables` attribute is settable
    root.__call__ = call
    root.variables = list(model.variables)
    root.trainable_variables = list(model.trainable_variables)
    root.regularization_losses = []  # the model adds no weight penalties
    return root


def model_card(metadata: dict) -> str:
    """The README.md written beside a converted model (metadata: convert's video_swin.json)."""
    shape = metadata["input_shape"]
    head = metadata.get("num_classes") is not None
    outputs = (
        f"logits `[B, {metadata['num_classes']}]` float32 (no softmax)"
        if head
        else "the final feature map `[B, T', H', W', C]` float32"
    )
    fmt = lambda values: ", ".join(f"{v:g}" for v in values)  # noqa: E731
    lines = [
        f"# Video Swin Transformer `{metadata['variant']}` (TensorFlow, converted from PyTorch)",
        "",
        f"- Source checkpoint: `{os.path.basename(metadata['checkpoint'])}` "
        f"({metadata['checkpoint_format']} layout, sha256 `{metadata['checkpoint_sha256']}`)",
        f"- Variant: `{metadata['variant']}`, {metadata['num_parameters']:,} parameters",
        f"- Input: float32 clips `[B, {', '.join(map(str, shape))}]` = `[B, T, H, W, 3]`, RGB "
        f"in 0..255 normalised as `(x - mean) / std` with mean `({fmt(MEAN_RGB)})` and std "
        f"`({fmt(STD_RGB)})` (`model/clip.py`'s MEAN_RGB / STD_RGB)",
        f"- Output of `__call__` and `serving_default`: {outputs}",
        "- Signature `features`: the final feature map `[B, T', H', W', C]` "
        "(patch 2x4x4, 3 merges: T' = T/2, H' = H/32, W' = W/32)",
        "",
        "## Use",
        "",
        "```python",
        "import tensorflow_hub as hub  # 0.15 on TF 2.16: see model/hub.py import_tensorflow_hub",
        "layer = hub.KerasLayer(DIR, trainable=True)  # fine-tunable Keras layer",
        'logits = tf.saved_model.load(DIR).signatures["serving_default"](clips=x)["logits"]',
        "```",
        "",
        "## Layout",
        "",
        "- `./`: a Reusable SavedModel (`__call__(inputs, training=False)`, `variables`, "
        "`trainable_variables`, `regularization_losses`) with the signatures above",
    ]
    if head:
        lines.append(
            f"- `{BACKBONE_DIR}/`: the backbone alone, a Reusable SavedModel whose `__call__` "
            "gives the feature map (for a new head)"
        )
    lines += [
        "- `keras_weights.h5`: weights for `model.video_swin.build_classifier(...)` "
        "(or `build_backbone`) `.load_weights`",
        "- `video_swin.json`: this card's facts, machine-readable",
        "",
    ]
    return "\n".join(lines)
