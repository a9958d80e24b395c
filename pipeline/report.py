"""What a pipeline run did, for a person: metrics, blessing and why, where the model went, plots.

Read back from ML Metadata and the artifacts the run's executions output (executions newer
than `since_id`, the newest execution id before the run started), so a run that stopped early
says so instead of reporting an older run's results, and a step the cache reused reports the
earlier result it handed on, marked as reused.
"""

from __future__ import annotations

import dataclasses
import json
import os

from ml_metadata.metadata_store import metadata_store

from model.options import HISTORY_FILE
from pipeline import evaluation


@dataclasses.dataclass
class RunReport:
    accuracy: float | None = None  # one view: serving_default's centre clip and crop
    top_k_accuracy: float | None = None
    # Multi-view (serving_views), when the model was evaluated on more than one view: then
    # these gate blessing, and per_class and confusion are theirs.
    views_accuracy: float | None = None
    views_top_k_accuracy: float | None = None
    views: tuple[int, int] | None = None  # (clips, crops), from the model's training record
    eval_examples: int | None = None
    per_class: dict[str, float] = dataclasses.field(default_factory=dict)
    blessed: bool | None = None
    reasons: list[str] = dataclasses.field(default_factory=list)  # why not blessed
    has_baseline: bool = False
    pushed_to: str | None = None
    model_run_dir: str | None = None
    class_names: list[str] = dataclasses.field(default_factory=list)
    confusion: list[list[float]] | None = None  # [actual][predicted] counts
    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    baseline_accuracy: float | None = None  # the served model's top-1 on the same eval data
    served_version: str = ""  # the model being served when the run started ("" : none)
    trained: bool | None = None  # None: the Trainer did not run
    not_trained: str = ""  # why the Trainer made no model
    spans: list[int] = dataclasses.field(default_factory=list)  # the window trained on
    ingested: list[int] = dataclasses.field(default_factory=list)  # the spans of the examples
    ingestion: str = ""  # "new", "reused" (registered) or "cached"
    cached: list[str] = dataclasses.field(default_factory=list)  # components the cache reused


def _store(metadata_path: str) -> metadata_store.MetadataStore:
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    )
    return metadata_store.MetadataStore(config)


def newest_execution_id_at(metadata_path: str) -> int:
    """The newest execution id in the metadata (0 before the first run)."""
    if not os.path.exists(metadata_path):
        return 0
    return max((e.id for e in _store(metadata_path).get_executions()), default=0)


class _RunOutputs:
    """The outputs of the executions newer than `since_id` (one run's): by artifact type, the
    newest execution's; and which components' executions were reused from the cache."""

    def __init__(self, store, since_id: int):
        from ml_metadata.proto import metadata_store_pb2 as mlmd

        executions = [e for e in store.get_executions() if e.id > since_id]
        types = {t.id: t.name for t in store.get_execution_types()}
        self.cached = sorted(
            types[e.type_id].rsplit(".", 1)[-1]
            for e in executions
            if e.last_known_state == mlmd.Execution.CACHED
        )
        events = store.get_events_by_execution_ids([e.id for e in executions]) if executions else []
        outputs = sorted(
            (e for e in events if e.type == mlmd.Event.OUTPUT), key=lambda e: e.execution_id
        )
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in outputs])}
        type_names = {t.id: t.name for t in store.get_artifact_types()}
        self._by_type: dict[str, list] = {}
        for event in outputs:
            artifact = artifacts[event.artifact_id]
            self._by_type.setdefault(type_names[artifact.type_id], []).append(artifact)

    def all(self, type_name: str) -> list:
        """Every artifact of the type the run output, in execution order."""
        return self._by_type.get(type_name, [])

    def newest(self, type_name: str):
        return (self.all(type_name) or [None])[-1]


def _value(metrics: dict, name: str) -> float | None:
    for key, value in metrics.items():
        if key == name or key.endswith("/" + name):
            return float(next(iter(value.values())))
    return None


def views_text(views: tuple[int, int] | None) -> str:
    """(4, 3) -> "4 clips x 3 crops"."""
    if not views:
        return "multi-view"
    (clips, crops) = views
    return f"{clips} clip{'s' * (clips > 1)} x {crops} crop{'s' * (crops > 1)}"


def _evaluated_views(config: dict) -> tuple[int, int] | None:
    """(clips, crops) from the training record beside the evaluated model's Format-Serving."""
    from model.options import TRAINING_RECORD

    locations = config.get("modelLocations", {})
    location = locations.get("candidate") or next(iter(locations.values()), "")
    record = os.path.join(os.path.dirname(location.rstrip("/")), TRAINING_RECORD)
    try:
        with open(record) as f:
            options = json.load(f)["options"]
        return (int(options["eval_clips"]), int(options["eval_crops"]))
    except (OSError, KeyError, ValueError):
        return None


def _read_evaluation(report: RunReport, uri: str) -> None:
    import tensorflow_model_analysis as tfma

    with open(os.path.join(uri, "eval_config.json")) as f:
        config = json.load(f)
    names = [s.get("name", "") for s in config["evalConfig"]["modelSpecs"]]
    candidate = "candidate" if "candidate" in names else names[0]
    report.has_baseline = "baseline" in names
    multi_view = any(
        evaluation.MULTI_VIEW_OUTPUT in spec.get("outputNames", [])
        for spec in config["evalConfig"]["metricsSpecs"]
    )
    if multi_view:
        report.views = _evaluated_views(config)
    gated = evaluation.MULTI_VIEW_OUTPUT if multi_view else ""  # the gated metrics' output
    single = evaluation.SINGLE_VIEW_OUTPUT if multi_view else ""
    if report.has_baseline:  # the served model's score on the metric that gates blessing
        for slice_key, metrics in tfma.load_eval_result(uri, model_name="baseline").slicing_metrics:
            if not slice_key:
                report.baseline_accuracy = _value(
                    metrics.get(gated, {}).get("", {}), evaluation.ACCURACY
                )
    result = tfma.load_eval_result(uri, model_name=candidate or None)
    for slice_key, metrics in result.slicing_metrics:
        values = metrics.get(gated, {}).get("", {})
        if not slice_key:
            report.accuracy = _value(metrics[single][""], evaluation.ACCURACY)
            report.top_k_accuracy = _value(metrics[single][""], evaluation.TOP_K_ACCURACY)
            if multi_view:
                report.views_accuracy = _value(values, evaluation.ACCURACY)
                report.views_top_k_accuracy = _value(values, evaluation.TOP_K_ACCURACY)
            count = _value(values, "example_count")
            report.eval_examples = None if count is None else int(count)
        else:
            name = slice_key[0][1]
            report.per_class[name.decode() if isinstance(name, bytes) else str(name)] = (
                _value(values, evaluation.ACCURACY) or 0.0
            )
    for slice_key, plots in result.plots:
        if slice_key:
            continue
        matrices = plots.get(gated, {}).get("", {}).get("multiClassConfusionMatrixAtThresholds", {})
        for matrix in matrices.get("matrices", [])[:1]:
            entries = matrix.get("entries", [])
            n = 1 + max(
                max(e.get("actualClassId", 0), e.get("predictedClassId", 0)) for e in entries
            )
            counts = [[0.0] * n for _ in range(n)]
            for e in entries:
                counts[e.get("actualClassId", 0)][e.get("predictedClassId", 0)] = e.get(
                    "numWeightedExamples", 0.0
                )
            report.confusion = counts
    validation = tfma.load_validation_result(uri)
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            key = failure.metric_key
            value = failure.metric_value.double_value.value
            threshold = failure.metric_threshold
            protocol = f" ({views_text(report.views)})" if key.output_name else ""
            if key.is_diff:
                report.reasons.append(
                    f"{key.name} is {value:+.3f} against the last blessed model (must not drop)"
                    + protocol
                )
            elif threshold.value_threshold.HasField("lower_bound"):
                bound = threshold.value_threshold.lower_bound.value
                report.reasons.append(
                    f"{key.name} {value:.3f} < the threshold {bound:.3f}" + protocol
                )
            else:
                report.reasons.append(f"{key.name}{protocol}: {failure.message}")


def collect(metadata_path: str, since_id: int = 0) -> RunReport:
    """The results of the run whose executions are newer than `since_id` (newest_execution_id_at
    before it started), from the pipeline's ML Metadata (SQLite) and artifacts."""
    store = _store(metadata_path)
    run = _RunOutputs(store, since_id)
    report = RunReport(cached=run.cached)
    _read_spans(report, run)
    evaluation_artifact = run.newest("ModelEvaluation")
    if evaluation_artifact and os.path.exists(
        os.path.join(evaluation_artifact.uri, "eval_config.json")
    ):
        _read_evaluation(report, evaluation_artifact.uri)
    blessing = run.newest("ModelBlessing")
    if blessing:
        report.blessed = bool(blessing.custom_properties["blessed"].int_value)
    pushed = run.newest("PushedModel")
    if pushed and pushed.custom_properties["pushed"].int_value and "Pusher" not in run.cached:
        report.pushed_to = pushed.custom_properties["pushed_destination"].string_value
    model_run = run.newest("ModelRun")
    if model_run:
        report.model_run_dir = model_run.uri
        history = os.path.join(model_run.uri, HISTORY_FILE)
        if os.path.exists(history):
            with open(history) as f:
                report.history = json.load(f)
    transform_graph = run.newest("TransformGraph")
    if transform_graph:
        import tensorflow_transform as tft

        from model.inputs import read_class_names

        report.class_names = read_class_names(tft.TFTransformOutput(transform_graph.uri))
    return report


def _read_spans(report: RunReport, run: _RunOutputs) -> None:
    """Which spans the examples hold and how they came (VideoExampleGen), the served version
    (LatestPushedModel), whether and on which spans the Trainer trained (its record)."""
    from components.served_model import SOURCE_PROPERTY
    from model.options import TRAINING_RECORD

    ingested = [a for a in run.all("Examples") if "spans" in a.custom_properties]
    examples = ingested[-1] if ingested else None  # VideoExampleGen's (not the Transform's)
    if examples is not None:
        spans = examples.custom_properties.get("spans")
        report.ingested = [int(n) for n in spans.string_value.split(",")] if spans else []
        reused = examples.custom_properties.get("reused")
        report.ingestion = (
            "cached"
            if "VideoExampleGen" in run.cached
            else "reused"
            if reused and reused.int_value
            else "new"
        )
    models = run.all("Model")
    for model in models:
        if SOURCE_PROPERTY in model.custom_properties:  # LatestPushedModel's copy
            source = model.custom_properties[SOURCE_PROPERTY].string_value
            report.served_version = os.path.basename(source)
            continue
        record_path = os.path.join(model.uri, TRAINING_RECORD)
        if os.path.exists(record_path):  # the Trainer's
            with open(record_path) as f:
                record = json.load(f)
            report.trained = record.get("trained", True)
            report.not_trained = "" if report.trained else record.get("reason", "")
            report.spans = record.get("spans", [])


def write_plots(report: RunReport, output_dir: str) -> list[str]:
    """training_curves.png (loss and accuracy per epoch) and confusion_matrix.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(output_dir, exist_ok=True)
    written = []
    if report.history.get("loss"):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        epochs = range(1, len(report.history["loss"]) + 1)
        for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
            for prefix, label in (("", "train"), ("val_", "eval")):
                if prefix + metric in report.history:
                    ax.plot(epochs, report.history[prefix + metric], marker="o", label=label)
            ax.set_xlabel("epoch")
            ax.set_title(metric)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        path = os.path.join(output_dir, "training_curves.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    if report.confusion:
        n = len(report.confusion)
        names = report.class_names if len(report.class_names) == n else [str(i) for i in range(n)]
        fig, ax = plt.subplots(figsize=(2 + 0.5 * n, 1.5 + 0.5 * n))
        ax.imshow(report.confusion, cmap="Blues")
        for i in range(n):
            for j in range(n):
                if n <= 20 and report.confusion[i][j]:
                    ax.text(j, i, int(report.confusion[i][j]), ha="center", va="center", fontsize=8)
        ax.set_xticks(range(n), names if n <= 30 else [""] * n, rotation=45, ha="right")
        ax.set_yticks(range(n), names if n <= 30 else [""] * n)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title("eval confusion matrix")
        fig.tight_layout()
        path = os.path.join(output_dir, "confusion_matrix.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def data_lines(report: RunReport) -> list[str]:
    """Which spans the run ingested or reused, and which it trained on."""
    from components.spans import span_ranges

    if not report.ingested:
        return []
    how = {
        "new": "ingested in this run",
        "reused": "ingested earlier (registered; not ingested again)",
        "cached": "ingested earlier (the cache reused ingestion and what follows)",
    }[report.ingestion or "new"]
    line = (
        f"Data: span{'s' if len(report.ingested) > 1 else ''} {span_ranges(report.ingested)} {how}"
    )
    if report.trained and report.spans:
        line += f"; trained on spans {span_ranges(report.spans)}"
        if "Trainer" in report.cached:
            line += " (an earlier run's model: the cache reused training on the same data)"
    return [line + "."]


def summary_lines(report: RunReport, min_accuracy: float) -> list[str]:
    lines = data_lines(report)
    if report.trained is False:
        served = report.served_version or "nothing"
        return lines + [
            f"No training: {report.not_trained}. Nothing evaluated or pushed; still served: "
            f"{served}. (--train-without-new-data trains anyway.)"
        ]
    if report.accuracy is None:
        return lines + [
            "No evaluation: the run stopped before the Evaluator (see the error above)."
        ]
    weakest = min(report.per_class.items(), key=lambda kv: kv[1], default=None)
    weakest_text = f"; weakest class {weakest[0]} {weakest[1]:.2f}" if weakest else ""
    single = f"top-1 {report.accuracy:.3f}, top-5 {report.top_k_accuracy:.3f}"
    if report.views_accuracy is None:
        lines.append(f"Eval split: {single} on {report.eval_examples} clips{weakest_text}")
        gate, gated = "top-1", report.accuracy
    else:
        views = views_text(report.views)
        lines.append(
            f"Eval split, {report.eval_examples} videos: {views} top-1 "
            f"{report.views_accuracy:.3f}, top-5 {report.views_top_k_accuracy:.3f}; "
            f"one view (serving_default) {single}{weakest_text}"
        )
        gate, gated = f"top-1 ({views})", report.views_accuracy
    if report.baseline_accuracy is not None:
        versus = f"{gate} {gated:.3f} vs served {report.baseline_accuracy:.3f}"
        if report.served_version:
            versus += f" ({report.served_version})"
    elif report.has_baseline:
        versus = f"{gate} {gated:.3f}"
    else:
        versus = f"{gate} {gated:.3f}, first model (nothing served)"
    if report.blessed:
        rule = "not below the served model" if report.has_baseline else "no baseline"
        lines.append(f"{versus}: BLESSED (>= {min_accuracy:.2f}, {rule}).")
    else:
        why = "; ".join(report.reasons) or "see the Evaluator's validations"
        lines.append(f"{versus}: NOT BLESSED: {why}.")
    if report.pushed_to:
        lines.append(f"Pushed to {report.pushed_to}")
    elif report.blessed and "Pusher" in report.cached:
        lines.append("Nothing new pushed: the cache reused an earlier run's push.")
    else:
        lines.append("Nothing pushed (only blessed models are).")
    return lines
