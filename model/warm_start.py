"""The Trainer's starting weights: the last blessed model, else a pretrained checkpoint, else none.

Precedence:
1. base_model: a SavedModel exported by the Trainer (root attribute `classifier`, model/export.py);
2. pretrained: an official Video-Swin or torchvision `.pth` (read without PyTorch, model/pth.py)
   or a directory written by `python -m model.convert`;
3. from scratch, with a warning.
A head whose class count differs from the classifier's is not loaded (the backbone is, and the
head stays freshly initialised); a backbone-only source does the same. Anything else that does
not fit (another variant, a corrupt file) is a CheckpointError naming the path.

Weights are copied by position in `model.variables` (the order build_classifier creates them),
read straight from the SavedModel's variables checkpoint: nothing is traced, and no optimizer
state (step counter, slots) of the source leaks into the new run.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import tensorflow as tf
from absl import logging

from data import storage
from model import convert
from model.pth import CheckpointError
from model.versions import holds_saved_model

# Where a SavedModel's variables checkpoint keeps a model's variables, in model.variables order:
# the Trainer's export tracks them as `classifier`'s `variables` list (model/export.py; earlier
# exports tracked the Keras model there, whose `variables` Keras saves under the same key);
# model.convert's export tracks them as the root's `variables` (model/hub.py).
_VARIABLE_LISTS = ("classifier/variables", "variables")
_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def initialize(classifier, base_model: str | None = None, pretrained: str | None = None) -> str:
    """Sets the starting weights of a build_classifier model; returns (and logs) the source.

    classifier: tf_keras model from model.video_swin.build_classifier (layers 'backbone', 'head').
    base_model: a Trainer SavedModel directory (or a TFX Model artifact URI holding
    Format-Serving/); pretrained: a .pth file or a model.convert output directory (or its
    backbone/). Paths may be any filesystem tf.io.gfile reads (gs://...); a .pth also s3://.
    """
    if base_model:
        description = f"base model {base_model}: " + _from_saved_model(
            classifier, _saved_model_dir(base_model), "base model"
        )
    elif pretrained and storage.isdir(pretrained):
        if storage.is_s3(pretrained):
            raise CheckpointError(
                f"{pretrained}: a converted checkpoint is read by TensorFlow, which reads no "
                "s3:// here: give its .pth, or put the directory on gs:// or a local disk"
            )
        description = f"converted checkpoint {pretrained}: " + _from_saved_model(
            classifier, pretrained, "converted checkpoint"
        )
    elif pretrained:
        description = f"pretrained checkpoint {pretrained}: " + _from_pth(classifier, pretrained)
    else:
        description = (
            "from scratch (random initialisation): no base model and no pretrained checkpoint"
        )
        logging.warning("Training %s %s", classifier.name, description)
        return description
    logging.info("Warm start of %s from %s", classifier.name, description)
    return description


def _saved_model_dir(path: str) -> str:
    if not tf.io.gfile.isdir(path):
        raise CheckpointError(f"{path}: base model directory does not exist")
    serving = os.path.join(path, "Format-Serving")  # a TFX Model artifact's layout
    return serving if not holds_saved_model(path) and tf.io.gfile.isdir(serving) else path


def _head_split(classifier) -> int:
    """Number of backbone variables; the head's (kernel, bias) come after them."""
    head = {v.ref() for v in classifier.get_layer("head").variables}
    variables = classifier.variables
    n = len(variables) - len(head)
    if {v.ref() for v in variables[n:]} != head:
        raise ValueError(f"{classifier.name}: the head's variables are not the last ones")
    return n


def _describe_head(ours: int, theirs: int | None) -> str:
    if theirs is None:
        return f"backbone only (the source has no head); new head of {ours} classes"
    if theirs != ours:
        return f"backbone only; head replaced ({theirs} -> {ours} classes)"
    return f"backbone and head ({ours} classes)"


def _from_saved_model(classifier, directory: str, what: str) -> str:
    prefix = os.path.join(directory, "variables", "variables")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise CheckpointError(f"{directory}: not a readable SavedModel ({what}): {e}") from e
    shapes = reader.get_variable_to_shape_map()
    for name in _VARIABLE_LISTS:
        keys = [f"{name}/{i}{_SUFFIX}" for i in range(len(shapes))]
        count = next((i for i, key in enumerate(keys) if key not in shapes), len(keys))
        if count:
            break
    else:
        raise CheckpointError(
            f"{directory}: no Video Swin variables in this SavedModel (expected a {what}: a "
            f"Trainer export with a `classifier`, or `python -m model.convert` output)"
        )
    ours = classifier.variables
    n_backbone = _head_split(classifier)
    if count not in (len(ours), n_backbone):
        raise CheckpointError(
            f"{directory}: {count} variables, but {classifier.name} has {len(ours)} ({n_backbone} "
            f"without head): another Video Swin variant?"
        )
    for i, variable in enumerate(ours[:n_backbone]):
        if list(shapes[keys[i]]) != list(variable.shape):
            raise CheckpointError(
                f"{directory}: variable {i} ({variable.name}) has shape {shapes[keys[i]]} there, "
                f"{variable.shape.as_list()} here: another Video Swin variant?"
            )
    num_classes = classifier.get_layer("head").num_classes
    theirs = None
    if count == len(ours):
        theirs = int(shapes[keys[count - 1]][0])  # the head's bias: [classes]
    load = count if theirs == num_classes else n_backbone
    values = [reader.get_tensor(keys[i]) for i in range(load)]  # read all before assigning any
    for variable, value in zip(ours[:load], values, strict=True):
        variable.assign(value)
    return _describe_head(num_classes, theirs)


def _from_pth(classifier, path: str) -> str:
    if "://" in path:  # gs://, s3://...: the reader needs a local file
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, os.path.basename(path))
            try:
                _copy_to_local(path, local)
            except tf.errors.OpError as e:
                raise CheckpointError(f"{path}: cannot read checkpoint: {e.message}") from e
            except FileNotFoundError as e:
                raise CheckpointError(f"{path}: cannot read checkpoint: {e}") from e
            try:
                return _from_pth(classifier, local)
            except CheckpointError as e:
                raise CheckpointError(str(e).replace(local, path)) from e
    state, fmt = convert.load_checkpoint(path)
    theirs = convert.num_classes_of(state)
    num_classes = classifier.get_layer("head").num_classes
    try:  # checks every key and shape before it assigns anything
        convert.load_torch_state_dict(classifier, state, head=theirs == num_classes)
    except CheckpointError as e:
        variant = classifier.get_layer("backbone").config.name
        raise CheckpointError(f"{path}: does not fit Video Swin {variant!r}: {e}") from e
    return f"{fmt} layout, " + _describe_head(num_classes, theirs)


def _copy_to_local(path: str, local: str) -> None:
    if not storage.is_s3(path):
        tf.io.gfile.copy(path, local)
        return
    if not storage.exists(path):  # TensorFlow reads no s3:// in this image (data/storage.py)
        raise FileNotFoundError("no such object")
    with storage.open(path) as source, open(local, "wb") as target:
        shutil.copyfileobj(source, target)
