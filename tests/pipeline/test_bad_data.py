"""Bad data does not reach training: with a seventh class the whole pipeline stops at the
AnomaliesGate, before Transform and the Trainer, naming the anomaly; --allow-anomalies trains."""

import os

import pytest

from components.anomalies_gate import DataAnomaliesError
from tests.conftest import copy_with_new_class, run_pipeline, tiny_train_options

pytestmark = pytest.mark.slow  # runs TFX components


@pytest.fixture(scope="module")
def seven_classes(small_synthetic_root, tmp_path_factory):
    """The small embedded set plus a class `Wave` (ShiftUp's clips renamed) it was never told of."""
    root = tmp_path_factory.mktemp("seven")
    return root, copy_with_new_class(small_synthetic_root, root / "data")


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
        train_options=tiny_train_options(epochs=1),
    )
    (version,) = os.listdir(paths["serving_dir"])
    import tensorflow as tf

    model = tf.saved_model.load(os.path.join(paths["serving_dir"], version))
    assert "Wave" in [c.decode() for c in model.class_names.numpy()]
