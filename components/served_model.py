"""The model being served is each run's starting point and the model to beat.

TFX's usual way, a latest-blessed-model Resolver, cannot run on Kubeflow Pipelines: the
open-source backend implements no resolver tasks ("resolver executors not implemented"). The
Pusher pushes only blessed models, so the newest complete version under the serving directory
*is* the latest blessed model. `LatestPushedModel` copies it into a Model artifact (the Trainer's
`Format-Serving/` layout): the Trainer warm-starts from it and the Evaluator compares with it,
the same way under LocalDagRunner and in every Kubeflow run (scheduled retraining included).

Before the first push the artifact is empty. The Trainer then starts from its pretrained
checkpoint (or from scratch), and `Evaluator` below, the stock one, judges the model by its
thresholds alone instead of failing on an empty baseline.
"""

# No `from __future__ import annotations` here: @component reads the signature's real types.
import os

from absl import logging
from tfx import v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import io_utils, path_utils

from components.batching import ByteSizeBatching
from model.export import holds_saved_model

SOURCE_PROPERTY = "pushed_model"  # custom property: the version folder copied ("" before a push)


def latest_version(serving_dir: str) -> str | None:
    """The newest complete `<serving_dir>/<version>/` (numeric name, saved_model.pb), or None."""
    if not fileio.isdir(serving_dir):
        return None
    names = (name.rstrip("/") for name in fileio.listdir(serving_dir))  # gs:// dirs end in /
    versions = [
        int(name)
        for name in names
        if name.isdigit() and holds_saved_model(os.path.join(serving_dir, name))
    ]
    return os.path.join(serving_dir, str(max(versions))) if versions else None


@component
def LatestPushedModel(  # noqa: N802 (a TFX component is named like a class)
    model: OutputArtifact[standard_artifacts.Model],
    serving_dir: Parameter[str],
    lookup: Parameter[str] = "",
):  # no return annotation: TFX takes only a TypedDict (or nothing) there
    """Copies the newest version pushed to `serving_dir` into `model` (empty before any push).

    `lookup` only tells runs apart for TFX's cache: the served model changes between runs while
    this step's inputs do not, so a cached result would be an outdated baseline.
    """
    del lookup
    source = latest_version(serving_dir)
    if source is None:
        logging.info("No model pushed to %s yet: this run has no baseline.", serving_dir)
    else:
        io_utils.copy_dir(source, path_utils.serving_model_dir(model.uri))
        logging.info("Baseline: the served model %s.", source)
    model.set_string_custom_property(SOURCE_PROPERTY, source or "")


class EvaluatorExecutor(ByteSizeBatching, evaluator_executor.Executor):
    """TFX's Evaluator executor, minus a baseline that holds no model (nothing pushed yet); its
    example reads batch by bytes (components/batching.py)."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 (TFX's name)
        key = standard_component_specs.BASELINE_MODEL_KEY
        baselines = input_dict.get(key) or []
        if baselines and not holds_saved_model(path_utils.serving_model_path(baselines[0].uri)):
            logging.info("The baseline is empty (no model pushed yet): thresholds alone decide.")
            input_dict = {k: v for k, v in input_dict.items() if k != key}
        super().Do(input_dict, output_dict, exec_properties)


class Evaluator(tfx.components.Evaluator):
    """tfx.components.Evaluator that accepts LatestPushedModel's empty first-run baseline."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(EvaluatorExecutor)
