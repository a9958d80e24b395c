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

import tensorflow_model_analysis as tfma
from absl import logging
from google.protobuf import json_format
from tfx import v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import io_utils, path_utils

from components import s3_fileio  # noqa: F401 (registers s3:// with TFX's fileio)
from components.batching import ByteSizeBatching
from model.export import holds_saved_model
from model.warmup import signature_defs

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


def _signatures_evaluated(exec_properties: dict) -> set[str]:
    """The signatures the Evaluator's EvalConfig reads."""
    config = json_format.Parse(
        exec_properties[standard_component_specs.EVAL_CONFIG_KEY], tfma.EvalConfig()
    )
    return {spec.signature_name or "serving_default" for spec in config.model_specs}


class EvaluatorExecutor(ByteSizeBatching, evaluator_executor.Executor):
    """TFX's Evaluator executor, minus a baseline it cannot judge by: one that holds no model
    (nothing pushed yet), or one exported without a signature the evaluation reads (a model
    pushed before multi-view evaluation has no serving_views). Its example reads batch by
    bytes (components/batching.py)."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 (TFX's name)
        key = standard_component_specs.BASELINE_MODEL_KEY
        baselines = input_dict.get(key) or []
        baseline = path_utils.serving_model_path(baselines[0].uri) if baselines else None
        if baseline and not holds_saved_model(baseline):
            logging.info("The baseline is empty (no model pushed yet): thresholds alone decide.")
            baselines = []
        elif baseline:
            missing = _signatures_evaluated(exec_properties) - set(signature_defs(baseline))
            if missing:
                logging.warning(
                    "The served model lacks the signature(s) %s this evaluation reads (it was "
                    "exported by an earlier version of this pipeline): it cannot be compared, so "
                    "thresholds alone decide this time.",
                    ", ".join(sorted(missing)),
                )
                baselines = []
        if not baselines:
            input_dict = {k: v for k, v in input_dict.items() if k != key}
        super().Do(input_dict, output_dict, exec_properties)


class Evaluator(tfx.components.Evaluator):
    """tfx.components.Evaluator that accepts LatestPushedModel's empty first-run baseline."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(EvaluatorExecutor)
