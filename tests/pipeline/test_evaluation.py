"""The Evaluator's configuration per view setting, and the summary that reports it.

The pipeline run (tests/pipeline/test_training_pipeline.py) checks what TFMA makes of the
multi-view configuration; these check the configuration and the summary's wording cheaply.
"""

from model import export
from pipeline import evaluation, report


def _gated(config):
    """(output names, metric class) of every metric that carries a threshold."""
    return [
        (list(spec.output_names), metric.class_name)
        for spec in config.metrics_specs
        for metric in spec.metrics
        if metric.per_slice_thresholds or metric.HasField("threshold")
    ]


def test_one_view_reads_serving_default_and_gates_its_top1():
    config = evaluation.eval_config(0.9)
    (spec,) = config.model_specs
    assert (spec.signature_name, spec.prediction_key) == ("serving_default", "probabilities")
    assert _gated(config) == [([], "SparseCategoricalAccuracy")]


def test_views_read_serving_views_once_and_gate_the_multi_view_top1():
    config = evaluation.eval_config(0.9, (4, 3))
    (spec,) = config.model_specs
    assert spec.signature_name == export.VIEWS_SIGNATURE and not spec.prediction_key
    outputs = [list(s.output_names) for s in config.metrics_specs]
    assert outputs == [[export.PROBABILITIES], [export.SINGLE_VIEW_PROBABILITIES]]
    assert _gated(config) == [([export.PROBABILITIES], "SparseCategoricalAccuracy")]
    (gate,) = config.metrics_specs[0].metrics[1].per_slice_thresholds
    assert list(gate.slicing_specs) == [evaluation.tfma.SlicingSpec()]  # the overall slice
    assert gate.threshold.value_threshold.lower_bound.value == 0.9


def test_summary_names_both_protocols_and_the_gated_one():
    one_view = report.RunReport(
        accuracy=0.967, top_k_accuracy=1.0, eval_examples=240, blessed=True, pushed_to="/s/1"
    )
    assert report.summary_lines(one_view, 0.9)[:2] == [
        "Eval split: top-1 0.967, top-5 1.000 on 240 clips",
        "BLESSED: top-1 >= 0.90 (first model, no baseline).",
    ]
    views = report.RunReport(
        accuracy=0.81,
        top_k_accuracy=0.95,
        views_accuracy=0.85,
        views_top_k_accuracy=0.97,
        views=(4, 3),
        eval_examples=3783,
        per_class={"Archery": 0.4, "Biking": 0.9},
        blessed=False,
        has_baseline=True,
        reasons=["accuracy 0.850 < the threshold 0.900 (4 clips x 3 crops)"],
    )
    assert report.summary_lines(views, 0.9)[:2] == [
        "Eval split, 3783 videos: 4 clips x 3 crops top-1 0.850, top-5 0.970; one view "
        "(serving_default) top-1 0.810, top-5 0.950; weakest class Archery 0.40",
        "NOT BLESSED: accuracy 0.850 < the threshold 0.900 (4 clips x 3 crops).",
    ]
    views.blessed, views.reasons = True, []
    assert report.summary_lines(views, 0.8)[1] == (
        "BLESSED: top-1 (4 clips x 3 crops) >= 0.80 (against the last blessed model)."
    )
