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
import json
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
from model.options import TRAINING_RECORD
from model.versions import complete_versions, holds_saved_model
from model.warmup import signature_defs

SOURCE_PROPERTY = "pushed_model"  # custom property: the version folder copied ("" before a push)


def latest_version(serving_dir: str) -> str | None:
    """The newest complete `<serving_dir>/<version>/` (numeric name, saved_model.pb), or None."""
    versions = complete_versions(serving_dir)
    return os.path.join(serving_dir, str(versions[-1])) if versions else None


@component
def LatestPushedModel(  # noqa: N802 (a TFX component is named like a class)
    model: OutputArtifact[standard_artifacts.Model],
    serving_dir: Parameter[str],
    version: Parameter[str] = "",
):  # no return annotation: TFX takes only a TypedDict (or nothing) there
    """Copies `<serving_dir>/<version>` into `model` (empty for version "": nothing pushed).

    `version` is the served version a step that runs in every run found (TrainingPlan's
    `served_version`): as a parameter it is in the cache key, so a cache never hands on an
    outdated baseline, and reuses the copy while the served model is the same.
    """
    source = os.path.join(serving_dir, version) if version else None
    if source is None:
        logging.info("No model pushed to %s yet: this run has no baseline.", serving_dir)
    elif not holds_saved_model(source):
        raise FileNotFoundError(f"{source}: the served version holds no saved_model.pb")
    else:
        io_utils.copy_dir(source, path_utils.serving_model_dir(model.uri))
        logging.info("Baseline: the served model %s.", source)
    model.set_string_custom_property(SOURCE_PROPERTY, source or "")


NOT_EVALUATED = "not_evaluated"  # the blessing's custom property: why nothing was evaluated
SPANS_PROPERTY = "spans"  # the blessing's custom property: the spans the model was trained on


def _signatures_evaluated(exec_properties: dict) -> set[str]:
    """The signatures the Evaluator's EvalConfig reads."""
    config = json_format.Parse(
        exec_properties[standard_component_specs.EVAL_CONFIG_KEY], tfma.EvalConfig()
    )
    return {spec.signature_name or "serving_default" for spec in config.model_specs}


class EvaluatorExecutor(ByteSizeBatching, evaluator_executor.Executor):
    """TFX's Evaluator executor, minus a baseline it cannot judge by: one that holds no model
    (nothing pushed yet), or one exported without a signature the evaluation reads (a model
    pushed before multi-view evaluation has no serving_views); and minus the evaluation when the
    Trainer made no model (nothing new to train on): then the blessing says NOT_BLESSED and why,
    so nothing is pushed. Its example reads batch by bytes (components/batching.py)."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 (TFX's name)
        candidate = input_dict[standard_component_specs.MODEL_KEY][0]
        blessing = output_dict[standard_component_specs.BLESSING_KEY][0]
        path = os.path.join(candidate.uri, TRAINING_RECORD)
        record = json.loads(io_utils.read_string_file(path)) if fileio.exists(path) else {}
        if "spans" in record:  # in ML Metadata: which spans made the model judged here
            blessing.set_string_custom_property(SPANS_PROPERTY, ",".join(map(str, record["spans"])))
        if not holds_saved_model(path_utils.serving_model_path(candidate.uri)):
            reason = "the Trainer made no model in this run"
            if record.get("reason"):
                reason += f": {record['reason']}"
            logging.info("Nothing to evaluate: %s.", reason)
            io_utils.write_string_file(os.path.join(blessing.uri, "NOT_BLESSED"), "")
            blessing.set_int_custom_property("blessed", 0)
            blessing.set_string_custom_property("current_model", candidate.uri)
            blessing.set_string_custom_property(NOT_EVALUATED, reason)
            return
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
