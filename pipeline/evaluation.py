"""The Evaluator's EvalConfig: what is measured on the eval split and what blesses a model.

TFMA reads the raw eval examples through the model's own signatures (the Transform graph is
inside them), so evaluation and serving cannot skew. Measured, overall and per class (slice
`label_name`, where accuracy is that class's recall): top-1 and top-k accuracy, example count,
and the multi-class confusion matrix.

Views: with one view (1 clip x 1 crop) TFMA reads `serving_default`. With more, it reads
`serving_views` once, whose two outputs give both protocols from one pass over the data:
`probabilities`, the softmax probabilities averaged over clips x crops (mmaction2's and Video
Swin's reported protocol), and `single_view_probabilities`, serving_default's answer. The
multi-view metrics gate blessing: they are the protocol the field reports (so the threshold
means what a paper's top-1 means), and an average over views judges a model by the whole video
rather than by one clip of it, so the comparison with the baseline is less noisy. The
single-view metrics, what a client gets by default, are reported beside them.

Blessing looks at the OVERALL slice only: top-1 at least `min_accuracy`, and not below the
baseline (the last blessed model) when there is one. One weak class of 101 therefore never
blocks a model by accident; read it in the per-class slices.
"""

from __future__ import annotations

import tensorflow_model_analysis as tfma

from data import features as F
from model import export

ACCURACY = "accuracy"
TOP_K_ACCURACY = "top_k_accuracy"
# The output each protocol's metrics are keyed by (TFMA's MetricKey.output_name); "" where the
# signature's one prediction is read through ModelSpec.prediction_key (one view).
MULTI_VIEW_OUTPUT = export.PROBABILITIES
SINGLE_VIEW_OUTPUT = export.SINGLE_VIEW_PROBABILITIES


def _metrics(min_accuracy: float | None, plots: bool) -> list[tfma.MetricConfig]:
    """Top-1 (gated when min_accuracy is given), top-k, and the counts and plots."""
    k = export.TOP_K
    thresholds = []
    if min_accuracy is not None:
        gate = tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}),
            # Ignored on a first run (no baseline); afterwards no regression is allowed.
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -1e-10}
            ),
        )
        thresholds = [
            tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=gate)
        ]
    accuracy = tfma.MetricConfig(
        class_name="SparseCategoricalAccuracy",
        config=f'{{"name": "{ACCURACY}"}}',
        # On the metric itself: a MetricsSpec-level per_slice_thresholds entry gets a key
        # without example_weighted and never matches ("Metric not found" on every slice,
        # TFMA 0.47).
        per_slice_thresholds=thresholds,
    )
    metrics = [
        accuracy,
        tfma.MetricConfig(
            class_name="SparseTopKCategoricalAccuracy",
            config=f'{{"name": "{TOP_K_ACCURACY}", "k": {k}}}',
        ),
    ]
    if plots:
        metrics = [
            tfma.MetricConfig(class_name="ExampleCount"),
            *metrics,
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
        ]
    return metrics


def eval_config(min_accuracy: float, views: tuple[int, int] = (1, 1)) -> tfma.EvalConfig:
    """views: (clips, crops) the model's serving_views averages (TrainOptions.eval_views)."""
    slicing = [tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[F.LABEL_NAME])]
    if tuple(views) == (1, 1):
        return tfma.EvalConfig(
            model_specs=[
                tfma.ModelSpec(
                    signature_name="serving_default",
                    label_key=F.LABEL,
                    prediction_key=export.PROBABILITIES,
                    model_type="tf_generic",
                )
            ],
            slicing_specs=slicing,
            metrics_specs=[tfma.MetricsSpec(metrics=_metrics(min_accuracy, plots=True))],
        )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=export.VIEWS_SIGNATURE, label_key=F.LABEL, model_type="tf_generic"
            )
        ],
        slicing_specs=slicing,
        metrics_specs=[
            tfma.MetricsSpec(
                output_names=[MULTI_VIEW_OUTPUT], metrics=_metrics(min_accuracy, plots=True)
            ),
            tfma.MetricsSpec(output_names=[SINGLE_VIEW_OUTPUT], metrics=_metrics(None, False)),
        ],
    )
