"""The Evaluator's baseline: dropped only when it cannot be judged by this evaluation."""

from __future__ import annotations

import tensorflow as tf
from google.protobuf import json_format
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import path_utils

from components import served_model
from pipeline import evaluation


def _export(model_uri: str, signatures: tuple[str, ...]) -> None:
    module = tf.Module()
    module.f = tf.function(lambda x: {"probabilities": x}, input_signature=[tf.TensorSpec([None])])
    concrete = module.f.get_concrete_function()
    tf.saved_model.save(
        module, path_utils.serving_model_dir(model_uri), {s: concrete for s in signatures}
    )


def _baseline_seen_by_tfma(tmp_path, monkeypatch, signatures, views) -> bool:
    seen = {}
    monkeypatch.setattr(
        evaluator_executor.Executor, "Do", lambda self, inputs, *_: seen.update(inputs)
    )
    baseline = standard_artifacts.Model()
    baseline.uri = str(tmp_path / "baseline")
    if signatures:
        _export(baseline.uri, signatures)
    config = evaluation.eval_config(0.5, views)
    properties = {standard_component_specs.EVAL_CONFIG_KEY: json_format.MessageToJson(config)}
    key = standard_component_specs.BASELINE_MODEL_KEY
    served_model.EvaluatorExecutor().Do({key: [baseline], "model": []}, {}, properties)
    return key in seen


def test_a_baseline_is_compared_when_it_has_the_signatures_evaluated(tmp_path, monkeypatch):
    both = ("serving_default", "serving_views")
    assert _baseline_seen_by_tfma(tmp_path / "a", monkeypatch, both, (4, 3))
    assert _baseline_seen_by_tfma(tmp_path / "b", monkeypatch, ("serving_default",), (1, 1))


def test_an_empty_or_older_baseline_leaves_the_thresholds_to_decide(tmp_path, monkeypatch, caplog):
    assert not _baseline_seen_by_tfma(tmp_path / "a", monkeypatch, (), (4, 3))  # nothing pushed
    # Exported before multi-view evaluation: no serving_views to compare with.
    assert not _baseline_seen_by_tfma(tmp_path / "b", monkeypatch, ("serving_default",), (4, 3))
    assert "serving_views" in caplog.text
