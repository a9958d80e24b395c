"""Bad data does not reach training: with a seventh class the whole pipeline stops at the
AnomaliesGate, before Transform and the Trainer, naming the anomaly; --allow-anomalies trains."""

import dataclasses
import os

import pytest

from components.anomalies_gate import DataAnomaliesError
from tests.helpers import copy_with_new_class, run_pipeline, tiny_train_options

pytestmark = pytest.mark.slow  # runs TFX components


@pytest.fixture(scope="module")
def seven_classes(tmp_path_factory):
    """The embedded set's classes with 2 clips a group (72 videos: what is tested does not depend
    on the size) plus a class `Wave` (ShiftUp's clips renamed) it was never told of."""
    from data import synthetic

    root = tmp_path_factory.mktemp("seven")
    six = synthetic.generate(
        root / "six", 0, dataclasses.replace(synthetic.SPEC, clips_per_group=2)
    )
    return root, copy_with_new_class(six, root / "data")


def test_a_new_class_stops_the_run_before_training(seven_classes):
    root, data = seven_classes
    with pytest.raises(DataAnomaliesError) as raised:
        run_pipeline(root, data, min_accuracy=0.0)
    message = str(raised.value)
    assert "ExampleValidator" in message and "'label_name'" in message and "Wave" in message
    assert "allow_anomalies" in message
    pipeline_root = root / "pipeline_root"
    assert (pipeline_root / "ExampleValidator" / "anomalies").is_dir()  # the report stays
    for component in ("Transform", "Trainer", "Pusher"):
        assert not (pipeline_root / component).exists(), component


def test_allow_anomalies_trains_anyway(seven_classes):
    root, data = seven_classes
    paths = run_pipeline(
        root,
        data,
        min_accuracy=0.0,
        enable_cache=True,
        allow_anomalies=True,
        # Only that it trains is tested: the smallest model, one epoch, one view.
        train_options=tiny_train_options(epochs=1, variant="micro", eval_clips=1, eval_crops=1),
    )
    (version,) = os.listdir(paths["serving_dir"])
    import tensorflow as tf

    model = tf.saved_model.load(os.path.join(paths["serving_dir"], version))
    assert "Wave" in [c.decode() for c in model.class_names.numpy()]
