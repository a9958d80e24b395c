"""The whole pipeline under LocalDagRunner: Transform -> Trainer -> Evaluator -> Pusher, and a
retraining run against the first run's blessed model. One run of each, shared by every test."""

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

from components import served_model
from data import features as F
from data import synthetic
from model import preprocessing, train
from model.inputs import DataError, make_dataset, read_class_names, transform_fn
from pipeline import report
from tests.helpers import EVAL_VIEWS, PIPELINE_COMPONENTS, split_sizes, tiny_train_options

TRAIN_CLIPS, EVAL_CLIPS = split_sizes()

pytestmark = pytest.mark.slow  # runs TFX components


def _first_run(pattern: str) -> str:
    """The first run's output among runs sharing a pipeline root (execution ids grow)."""
    paths = glob.glob(pattern)
    assert paths, pattern
    return min(paths, key=lambda p: int(re.search(r"/(\d+)(/|$)", p).group(1)))


def _versions(serving_dir):
    return sorted(os.listdir(serving_dir)) if os.path.isdir(serving_dir) else []


def _raw_eval_examples(pipeline_root) -> dict[str, bytes]:
    (split,) = glob.glob(f"{pipeline_root}/VideoExampleGen/examples/*/Split-eval")
    records = tf.data.TFRecordDataset(sorted(glob.glob(f"{split}/*")), compression_type="GZIP")
    out = {}
    for record in records.as_numpy_iterator():
        example = tf.train.Example.FromString(record)
        out[example.features.feature[F.VIDEO_ID].bytes_list.value[0].decode()] = record
    return out


def test_every_component_ran_and_the_blessed_model_was_pushed(pipeline_run):
    root = pipeline_run["pipeline_root"]
    for component in PIPELINE_COMPONENTS:
        assert os.path.isdir(os.path.join(root, component)), component
    blessing = _first_run(f"{root}/Evaluator/blessing/*/*")
    assert os.path.basename(blessing) == "BLESSED"
    (version,) = _versions(pipeline_run["serving_dir"])  # TF Serving's <model>/<version>/
    assert version.isdigit()
    pushed = os.path.join(pipeline_run["serving_dir"], version)
    assert os.path.isfile(os.path.join(pushed, "saved_model.pb"))
    assert os.path.isdir(os.path.join(pushed, "variables"))


def test_pushed_model_loads_in_a_fresh_process_without_this_repo(pipeline_run, tmp_path):
    """Only TensorFlow: the class names, the Transform graph and both signatures are inside."""
    (version,) = _versions(pipeline_run["serving_dir"])
    example = next(iter(_raw_eval_examples(pipeline_run["pipeline_root"]).values()))
    (tmp_path / "example.bin").write_bytes(example)
    script = f"""
import importlib.util, json, tensorflow as tf
assert importlib.util.find_spec("model") is None, "this repository is importable"
model = tf.saved_model.load({os.path.join(pipeline_run["serving_dir"], version)!r})
out = model.signatures["serving_default"](examples=tf.constant([open("example.bin", "rb").read()]))
frames = tf.zeros([2, 8, 48, 40, 3], tf.uint8)
out2 = model.signatures["serving_frames"](frames=frames)
print(json.dumps({{
    "classes": [c.decode() for c in out["classes"].numpy()[0]],
    "sum": float(out["probabilities"].numpy().sum()),
    "scores": out["scores"].numpy()[0].tolist(),
    "frames_shape": list(out2["probabilities"].shape),
    "names": [c.decode() for c in model.class_names.numpy()],
}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["names"] == list(synthetic.SPEC.classes)
    assert len(out["classes"]) == 5 and set(out["classes"]) <= set(synthetic.SPEC.classes)
    assert out["scores"] == sorted(out["scores"], reverse=True)
    assert abs(out["sum"] - 1.0) < 1e-5
    assert out["frames_shape"] == [2, len(synthetic.SPEC.classes)]


def test_no_skew_between_serving_and_the_trainers_eval_input(pipeline_run):
    """serving_default on raw eval examples == the model on the Trainer's own eval pipeline."""
    import tensorflow_transform as tft

    root = pipeline_run["pipeline_root"]
    (graph,) = glob.glob(f"{root}/Transform/transform_graph/*")
    (split,) = glob.glob(f"{root}/VideoExampleGen/examples/*/Split-eval")
    (version,) = _versions(pipeline_run["serving_dir"])
    model = tf.saved_model.load(os.path.join(pipeline_run["serving_dir"], version))
    options = tiny_train_options()
    transform = transform_fn(tft.TFTransformOutput(graph))
    files = f"{split}/*"
    # The Trainer's eval input pipeline, exactly as fit() sees it, and the same records' ids.
    clips = [x for x, _ in make_dataset(files, transform, options, 6, 16, training=False)]
    ids = [
        e[F.VIDEO_ID].decode()
        for e in tf.data.TFRecordDataset(sorted(glob.glob(files)), compression_type="GZIP")
        .map(transform)
        .as_numpy_iterator()
    ]
    clips = np.concatenate([c.numpy() for c in clips])
    assert clips.dtype == np.uint8 and len(clips) == len(ids) == EVAL_CLIPS
    trainer_probs = model.signatures["serving_frames"](frames=tf.constant(clips))["probabilities"]
    raw = _raw_eval_examples(root)
    served = model.signatures["serving_default"](examples=tf.constant([raw[i] for i in ids]))
    np.testing.assert_allclose(served["probabilities"].numpy(), trainer_probs.numpy(), atol=1e-5)


def test_class_vocabulary_and_transformed_examples(pipeline_run):
    import tensorflow_transform as tft

    (graph,) = glob.glob(f"{pipeline_run['pipeline_root']}/Transform/transform_graph/*")
    output = tft.TFTransformOutput(graph)
    assert read_class_names(output) == list(synthetic.SPEC.classes)
    spec = output.transformed_feature_spec()
    assert spec[preprocessing.SAMPLED_FRAMES].shape == [tiny_train_options().sampled_frames]
    assert set(spec) == {preprocessing.SAMPLED_FRAMES, F.LABEL, F.VIDEO_ID}


def test_the_examples_are_stored_once(pipeline_run):
    """The Transform only analyses; the Trainer read VideoExampleGen's examples, the one copy."""
    root = pipeline_run["pipeline_root"]
    assert not glob.glob(f"{root}/Transform/transformed_examples*")
    examples, others = 0, 0  # bytes of TFRecord files: the examples, and anything else
    for path in glob.glob(f"{root}/**/*.gz", recursive=True):
        if path.startswith(f"{root}/VideoExampleGen/examples/"):
            examples += os.path.getsize(path)
        else:
            others += os.path.getsize(path)  # the Transform's analyzer cache: accumulators
    assert examples > 0 and others < 0.05 * examples, (examples, others)
    store, trainer_inputs = _inputs_of(
        pipeline_run["metadata"], "tfx.components.trainer.component.Trainer"
    )
    (examples,) = store.get_artifacts_by_type("Examples")
    (inputs,) = trainer_inputs.values()
    assert examples.id in inputs


def test_a_bad_label_stops_the_trainer_at_its_batch_naming_the_video(pipeline_run, tmp_path):
    """Real eval examples through the real Transform graph; one has a label/label_name pair the
    training split never had. The epoch size comes from counts.json: no scan before training."""
    import tensorflow_transform as tft

    from data import counts

    root = pipeline_run["pipeline_root"]
    (graph,) = glob.glob(f"{root}/Transform/transform_graph/*")
    raw = list(_raw_eval_examples(root).values())[:12]
    bad = tf.train.Example.FromString(raw[7])
    bad.features.feature[F.LABEL_NAME].bytes_list.value[:] = [b"Wave"]
    bad_id = bad.features.feature[F.VIDEO_ID].bytes_list.value[0].decode()
    raw[7] = bad.SerializeToString()
    for split, records in (("train", raw), ("eval", raw[:4])):
        (tmp_path / "examples" / f"Split-{split}").mkdir(parents=True)
        path = str(tmp_path / "examples" / f"Split-{split}" / "data.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for record in records:
                writer.write(record)
    counts.write(str(tmp_path / "examples"), {"train": 12, "eval": 4})
    with pytest.raises(DataError, match=rf"^{bad_id}: its label/label_name pair"):
        train.train(
            tiny_train_options(epochs=1, batch_size=4, variant="micro"),
            str(tmp_path / "examples" / "Split-train" / "*"),
            str(tmp_path / "examples" / "Split-eval" / "*"),
            tft.TFTransformOutput(graph),
            str(tmp_path / "run"),
        )


def test_training_history_and_report(pipeline_run, tmp_path):
    result = pipeline_run["report"]
    assert len(result.history["val_accuracy"]) == tiny_train_options().epochs
    assert result.blessed and result.pushed_to and result.eval_examples == EVAL_CLIPS
    assert set(result.per_class) == set(synthetic.SPEC.classes)
    assert sum(map(sum, result.confusion)) == EVAL_CLIPS
    plots = report.write_plots(result, str(tmp_path))
    assert [os.path.basename(p) for p in plots] == ["training_curves.png", "confusion_matrix.png"]
    lines = report.summary_lines(result, 0.0)
    assert lines[0] == "Data: span 0 ingested in this run; trained on spans 0."
    assert lines[1].startswith(f"Eval split, {EVAL_CLIPS} videos: ")  # multi-view: EVAL_VIEWS
    assert lines[2].endswith(": BLESSED (>= 0.00, no baseline).") and "first model" in lines[2]
    assert lines[3].startswith("Pushed to ")
    # The run's model record: where it started from, its options and classes.
    with open(_first_run(f"{pipeline_run['pipeline_root']}/Trainer/model/*/training.json")) as f:
        record = json.load(f)
    assert record["started_from"].startswith("from scratch")
    assert record["class_names"] == list(synthetic.SPEC.classes)


def test_evaluator_reports_both_protocols_and_gates_on_the_multi_view_one(
    pipeline_run, retrain_run
):
    """TFMA read serving_views once: both protocols' top-1 and top-5 in every run; the second
    run (a threshold of 1.01, against the first run's model) fails only on the multi-view top-1
    of the overall slice."""
    import tensorflow_model_analysis as tfma

    from pipeline import evaluation

    first = pipeline_run["report"]
    assert first.views == EVAL_VIEWS and first.blessed
    for value in (first.accuracy, first.top_k_accuracy, first.views_accuracy):
        assert 0.0 <= value <= 1.0
    lines = report.summary_lines(first, 0.0)  # after the line naming the spans
    assert lines[1].startswith(
        f"Eval split, {EVAL_CLIPS} videos: 3 clips x 1 crop top-1 {first.views_accuracy:.3f}"
    )
    assert lines[2].startswith(
        f"top-1 (3 clips x 1 crop) {first.views_accuracy:.3f}, first model (nothing served): "
        "BLESSED (>= 0.00"
    )
    (evaluation_dir,) = [
        path
        for path in glob.glob(f"{retrain_run['pipeline_root']}/Evaluator/evaluation/*")
        if path != _first_run(f"{retrain_run['pipeline_root']}/Evaluator/evaluation/*")
    ]
    result = tfma.load_eval_result(evaluation_dir, model_name="candidate")
    (overall,) = [metrics for key, metrics in result.slicing_metrics if not key]
    for output in (evaluation.MULTI_VIEW_OUTPUT, evaluation.SINGLE_VIEW_OUTPUT):
        assert {evaluation.ACCURACY, evaluation.TOP_K_ACCURACY} <= set(overall[output][""])
    failures = [
        (per_slice.slice_key, failure.metric_key)
        for per_slice in tfma.load_validation_result(evaluation_dir).metric_validations_per_slice
        for failure in per_slice.failures
    ]
    assert failures
    for slice_key, key in failures:
        assert not slice_key.single_slice_keys  # the overall slice
        assert (key.name, key.output_name) == (evaluation.ACCURACY, evaluation.MULTI_VIEW_OUTPUT)


def _inputs_of(metadata_path, type_name):
    """{execution id: [input artifact ids]} of the executions of one component type."""
    from ml_metadata.metadata_store import metadata_store

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    store = metadata_store.MetadataStore(config)
    executions = store.get_executions_by_type(type_name)
    events = store.get_events_by_execution_ids([e.id for e in executions])
    inputs: dict[int, list[int]] = {}
    for event in events:
        if event.type == metadata_store_pb2.Event.INPUT:
            inputs.setdefault(event.execution_id, []).append(event.artifact_id)
    return store, inputs


def test_retraining_starts_from_and_is_judged_against_the_served_model(pipeline_run, retrain_run):
    """The first run had nothing to start from; the retraining run got a copy of the model the
    first run pushed, as the Trainer's base_model and the Evaluator's baseline."""
    store, trainer_inputs = _inputs_of(
        retrain_run["metadata"], "tfx.components.trainer.component.Trainer"
    )
    _, evaluator_inputs = _inputs_of(retrain_run["metadata"], "components.served_model.Evaluator")
    lookups = sorted(
        (
            a
            for a in store.get_artifacts_by_type("Model")
            if served_model.SOURCE_PROPERTY in a.custom_properties
        ),
        key=lambda a: a.id,
    )
    assert len(lookups) == 2
    first, second = (
        a.custom_properties[served_model.SOURCE_PROPERTY].string_value for a in lookups
    )
    (version,) = _versions(pipeline_run["serving_dir"])
    assert first == "" and second == os.path.join(pipeline_run["serving_dir"], version)
    baseline = lookups[1]
    copied = os.path.join(baseline.uri, "Format-Serving", "saved_model.pb")
    with open(copied, "rb") as a, open(os.path.join(second, "saved_model.pb"), "rb") as b:
        assert a.read() == b.read()
    assert baseline.id in trainer_inputs[max(trainer_inputs)]
    assert baseline.id in evaluator_inputs[max(evaluator_inputs)]
    (record,) = [
        path
        for path in glob.glob(f"{retrain_run['pipeline_root']}/Trainer/model/*/training.json")
        if path != _first_run(f"{retrain_run['pipeline_root']}/Trainer/model/*/training.json")
    ]
    with open(record) as f:
        assert json.load(f)["started_from"].startswith(f"base model {baseline.uri}")


def test_a_model_below_the_threshold_is_not_blessed_nor_pushed(pipeline_run, retrain_run):
    assert len(_versions(retrain_run["serving_dir"])) == 1  # still only the first run's push
    result = report.collect(retrain_run["metadata"], retrain_run["since"])
    assert result.blessed is False and result.pushed_to is None and result.has_baseline
    lines = report.summary_lines(result, 1.01)
    (version,) = _versions(retrain_run["serving_dir"])
    served = f"vs served {result.baseline_accuracy:.3f} ({version}): NOT BLESSED: accuracy"
    assert served in lines[2] and "< the threshold 1.010" in lines[2]
    assert lines[3] == "Nothing pushed (only blessed models are)."
    # The served model's score is its own on the gated metric (multi-view), on the same data.
    assert result.baseline_accuracy == pipeline_run["report"].views_accuracy


def test_trainer_warm_starts_from_an_official_checkpoint(pipeline_run, tmp_path):
    """A first pipeline run on fresh metadata (no blessed model) with --pretrained: an official
    .pth written by torch from the trained model's weights. Its first epoch beats the
    from-scratch run's first epoch."""
    from model import warm_start
    from model.video_swin import build_classifier
    from tests.helpers import run_pipeline
    from tests.model import torch_reference

    options = tiny_train_options()
    classifier = build_classifier(options.variant, 6, options.clip_shape)
    model_dir = _first_run(f"{pipeline_run['pipeline_root']}/Trainer/model/*")
    warm_start.initialize(classifier, base_model=model_dir)
    checkpoint = str(tmp_path / "swin_tiny_w4_official.pth")
    torch_reference.official_checkpoint_from_keras(classifier, checkpoint)

    paths = run_pipeline(
        tmp_path,
        pipeline_run["data_root"],
        min_accuracy=0.0,
        # The Trainer's own validation is compared; the Evaluator need not evaluate 3 views.
        train_options=tiny_train_options(epochs=1, pretrained=checkpoint, eval_clips=1),
    )
    (record,) = glob.glob(f"{paths['pipeline_root']}/Trainer/model/*/training.json")
    with open(record) as f:
        warm = json.load(f)
    assert warm["started_from"].startswith(f"pretrained checkpoint {checkpoint}")
    scratch = pipeline_run["report"].history["val_accuracy"][0]
    assert warm["final_epoch"]["val_accuracy"] > scratch
