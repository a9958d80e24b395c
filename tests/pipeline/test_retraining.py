"""Scheduled retraining on arriving data, under LocalDagRunner with caching on (as `make run`):
span 0, then span 1 arrives and a second run ingests only it, then a run without new data; and
that last run once more without the cache, which must decide the same, only slower.

The learning rate is 0: the second run's model, warm-started from the served one, is that model
again, so its blessing against the served model is known before it runs (equal scores: not
below). Scores and blessings are still read from the Evaluator, as a person would.
"""

from __future__ import annotations

import glob
import json
import os

import pytest

from pipeline import report
from tests.helpers import add_span, run_pipeline, tiny_train_options

pytestmark = pytest.mark.slow  # runs TFX components

# The smallest model: which spans are ingested and trained on, and what is blessed, is tested.
OPTIONS = tiny_train_options(epochs=1, batch_size=4, learning_rate=0.0, variant="micro")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four runs on one metadata store: [span 0], [span 1 arrived], [nothing new], [nothing new,
    no cache]; each {"report", "versions" (pushed so far), "registry" (after it), paths}."""
    from components import spans

    root = tmp_path_factory.mktemp("retraining")
    data = root / "data"
    add_span(data, 0)
    done = []

    def run(enable_cache=True):
        metadata = str(root / "metadata.sqlite")
        since = report.newest_execution_id_at(metadata)
        paths = run_pipeline(
            root, data, min_accuracy=0.0, enable_cache=enable_cache, train_options=OPTIONS
        )
        versions = sorted(os.listdir(paths["serving_dir"]))
        registry = spans.read_registry(os.path.join(paths["pipeline_root"], "spans"))
        result = report.collect(metadata, since)
        done.append({"report": result, "versions": versions, "registry": registry, **paths})

    run()
    add_span(data, 1)
    run()
    run()
    run(enable_cache=False)
    return done


def _examples_ids(uri: str) -> set[str]:
    import tensorflow as tf

    files = sorted(glob.glob(f"{uri}/Split-*/*.gz"))
    ids = set()
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        example = tf.train.Example.FromString(record)
        ids.add(example.features.feature["video_id"].bytes_list.value[0].decode())
    return ids


def _json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _record(run, version: str) -> dict:
    from model import options

    return _json(os.path.join(run["serving_dir"], version, options.SERVED_RECORD))


def test_the_first_run_ingests_span_0_and_pushes_its_model(runs):
    first = runs[0]["report"]
    assert first.ingested == [0] and first.ingestion == "new"
    assert first.trained and first.spans == [0] and not first.has_baseline
    assert first.blessed and first.pushed_to  # the first model: the threshold (0) alone
    (version,) = runs[0]["versions"]
    assert _record(runs[0], version)["spans"] == [0]  # the pushed model says what made it
    assert list(runs[0]["registry"]) == [0]


def test_the_second_run_ingests_only_the_new_span_and_trains_from_the_served_model(runs):
    from data import video_sets

    second = runs[1]["report"]
    assert second.ingested == [1] and second.ingestion == "new"
    examples = runs[1]["registry"][1]["examples"]
    span_1 = video_sets.list_videos(os.path.join(runs[1]["data_root"], "span-1"), 1)
    assert _examples_ids(examples) == {r.video_id for r in span_1.records}  # span 1 only
    assert runs[1]["registry"][0]["examples"] != examples  # span 0 stays where run 1 put it
    # Trained on both spans, span 0 read where the first run stored it, from the served model.
    records = [
        _json(path)
        for path in glob.glob(f"{runs[1]['pipeline_root']}/Trainer/model/*/training.json")
    ]
    (record,) = [r for r in records if r.get("spans") == [0, 1] and r["trained"]]
    assert record["train_examples"] == 16  # 8 training clips in each span
    (first_version,) = runs[0]["versions"]
    assert record["started_from"].startswith("base model")
    assert second.served_version == first_version
    # Compared with the served model on the new eval data, and blessed as the scores say.
    assert second.has_baseline and second.baseline_accuracy is not None
    gated = second.views_accuracy  # multi-view top-1 (the test runs' EVAL_VIEWS) gates blessing
    assert second.blessed == (gated >= second.baseline_accuracy)
    assert bool(second.pushed_to) == second.blessed
    lines = report.summary_lines(second, 0.0)
    assert lines[0] == "Data: span 1 ingested in this run; trained on spans 0-1."
    views = report.views_text(second.views)
    versus = f"top-1 ({views}) {gated:.3f} vs served {second.baseline_accuracy:.3f}"
    assert lines[2].startswith(f"{versus} ({first_version}): BLESSED")


def test_a_run_without_new_data_reuses_ingestion_and_trains_nothing(runs):
    third = runs[2]["report"]
    assert {"VideoExampleGen", "StatisticsGen", "Transform", "RegisterSpans"} <= set(third.cached)
    assert third.ingested == [1] and third.ingestion == "cached"
    served = runs[1]["versions"][-1]  # the second run's model (blessed above)
    assert third.trained is False and third.served_version == served
    assert f"the served model {served} was trained on these spans" in third.not_trained
    assert third.blessed is False and third.pushed_to is None
    assert runs[2]["versions"] == runs[1]["versions"]
    lines = report.summary_lines(third, 0.0)
    assert lines[1].startswith("No training: the served model") and served in lines[1]


def test_without_the_cache_the_same_decisions_only_slower(runs):
    """Every step runs, and decides as the cache did: VideoExampleGen hands on the registered
    examples of span 1 (writing none), the Trainer trains nothing, nothing is pushed."""
    fourth, third = runs[3]["report"], runs[2]["report"]
    assert not fourth.cached
    assert fourth.ingested == [1] and fourth.ingestion == "reused"
    outputs = glob.glob(f"{runs[3]['pipeline_root']}/VideoExampleGen/examples/*")
    newest = max(outputs, key=lambda path: int(os.path.basename(path)))
    assert not os.listdir(newest)  # the folder TFX made for it stayed empty
    for what in ("trained", "not_trained", "served_version", "blessed", "pushed_to", "spans"):
        assert getattr(fourth, what) == getattr(third, what), what
    assert runs[3]["versions"] == runs[2]["versions"]
