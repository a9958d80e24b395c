"""The Evaluator's EvalConfig: what is measured on the eval split and what blesses a model.

TFMA reads the raw eval examples through the model's `serving_default` (the Transform graph is
inside it), so evaluation and serving cannot skew. Measured, overall and per class (slice
`label_name`, where accuracy is that class's recall): top-1 and top-k accuracy, example count,
and the multi-class confusion matrix. Blessing looks at the OVERALL slice only: top-1 at least
`min_accuracy`, and not below the baseline (the last blessed model) when there is one. One weak
class of 101 therefore never blocks a model by accident; read it in the per-class slices.
"""

from __future__ import annotations

import tensorflow_model_analysis as tfma

from data import features as F
from model import export

ACCURACY = "accuracy"
TOP_K_ACCURACY = "top_k_accuracy"


def eval_config(min_accuracy: float) -> tfma.EvalConfig:
    k = export.TOP_K
    accuracy_gate = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}),
        # Ignored on a first run (no baseline); afterwards no regression is allowed.
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -1e-10}
        ),
    )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                label_key=F.LABEL,
                prediction_key=export.PROBABILITIES,
                model_type="tf_generic",
            )
        ],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[F.LABEL_NAME])],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(
                        class_name="SparseCategoricalAccuracy",
                        config=f'{{"name": "{ACCURACY}"}}',
                        # On the metric itself: a MetricsSpec-level per_slice_thresholds entry
                        # gets a key without example_weighted and never matches ("Metric not
                        # found" on every slice, TFMA 0.47).
                        per_slice_thresholds=[
                            tfma.PerSliceMetricThreshold(
                                slicing_specs=[tfma.SlicingSpec()], threshold=accuracy_gate
                            )
                        ],
                    ),
                    tfma.MetricConfig(
                        class_name="SparseTopKCategoricalAccuracy",
                        config=f'{{"name": "{TOP_K_ACCURACY}", "k": {k}}}',
                    ),
                    tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
                ],
            )
        ],
    )
