"""The one pipeline definition, used by local_runner.py and kubeflow_runner.py.

NewSpans -> VideoExampleGen -> StatisticsGen -> (Import)SchemaGen -> ExampleValidator ->
AnomaliesGate -> (RegisterSpans) Transform (analysis only) -> Trainer (raw examples through the
Transform graph) -> Evaluator -> Pusher. TrainingPlan picks the window of spans to train on and
finds the served version; LatestPushedModel hands that model (the latest blessed one) to the
Trainer as base_model and to the Evaluator as baseline: a scheduled retraining run continues
from, and must beat, the model being served.

Run-time values travel as parameters (`.future()[0].value`), which are in both runners' cache
keys: with caching on, a run without new data reuses ingestion and transform and trains nothing;
a run with new data ingests only the new spans (components/spans.py).
"""

from __future__ import annotations

import json
import posixpath

from tfx import v1 as tfx

from components import batching, tfjob_trainer
from components.anomalies_gate import AnomaliesGate
from components.served_model import Evaluator, LatestPushedModel
from components.spans import NewSpans, RegisterSpans, TrainingPlan
from components.video_example_gen import VideoExampleGen
from components.video_schema_gen import SchemaGen
from data.ingest_options import IngestOptions
from model import function_teardown, preprocessing, train
from pipeline import configs, evaluation, statistics


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    serving_dir: str | None = None,
    ucf_split: int = 1,
    ingest_options: IngestOptions | None = None,
    train_options: train.TrainOptions | None = None,
    min_accuracy: float = configs.MIN_ACCURACY,
    schema_path: str | None = None,
    allow_anomalies: bool = False,
    validate_only: bool = False,
    metadata_connection_config=None,
    beam_pipeline_args: list[str] | None = None,
    enable_cache: bool = False,
    vertex_training: dict | None = None,
    tfjob: dict | None = None,
    span_pattern: str = configs.SPAN_PATTERN,
    span_window: int = configs.SPAN_WINDOW,
    train_without_new_data: bool = False,
    span_registry: str | None = None,
    run_id: str = "",
    worker_image: str = configs.KUBEFLOW_IMAGE,
) -> tfx.dsl.Pipeline:
    """schema_path: a curated schema to validate against (ImportSchemaGen); None infers one from
    this data (SchemaGen), which can then only flag problems inside this one data set.
    serving_dir: where blessed models are pushed, as <serving_dir>/<version>/.
    allow_anomalies: train even when ExampleValidator found anomalies (for people who looked).
    validate_only: stop after ExampleValidator (ingest and validate new data, report anomalies,
    train nothing).
    vertex_training: {"project", "region", "worker_pool_specs"} runs the Trainer as a Vertex AI
    custom job on several machines (Vertex sets TF_CONFIG: run_fn goes multi-worker); the
    pipeline must then run where Vertex is reachable (Vertex AI Pipelines, or KFP on GCP).
    tfjob: components.tfjob_trainer.TFJobSettings' fields: runs the Trainer as a multi-worker
    TFJob of Kubeflow's Training Operator (which sets TF_CONFIG) on the cluster running the step.
    span_pattern: how span folders under data_root are named (data/spans.py); a root without
    them is one span. span_window: train on the last N spans (0: all). train_without_new_data:
    train even when the window is what the served model was trained on.
    span_registry: where ingested spans are recorded (default <pipeline_root>/spans).
    run_id: a value that differs in every run where a cache would otherwise reuse the span
    resolvers (Kubeflow: components.spans.KFP_RUN_ID); locally their drivers key the cache.
    worker_image: the image remote Beam workers run (beam_args_with_workers' image).
    """
    if vertex_training and tfjob:
        raise ValueError("the Trainer runs on Vertex AI or as a TFJob, not both")
    if not validate_only and not serving_dir:
        raise ValueError("serving_dir is required unless validate_only")
    train_options = train_options or train.TrainOptions()
    beam_pipeline_args = beam_args_with_workers(beam_pipeline_args or [], worker_image)
    registry = span_registry or posixpath.join(pipeline_root, "spans")
    new_spans = NewSpans(
        data_root=data_root, span_registry=registry, span_pattern=span_pattern, run=run_id
    )
    ingest = new_spans.outputs["ingest"].future()[0].value
    example_gen = VideoExampleGen(
        input_base=data_root,
        ucf_split=ucf_split,
        options=ingest_options,
        spans=ingest,
        span_pattern=span_pattern,
        span_registry=registry,
    )
    statistics_gen = batching.StatisticsGen(
        examples=example_gen.outputs["examples"], stats_options=statistics.stats_options()
    )
    if schema_path:
        schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path)
    else:
        schema_gen = SchemaGen(
            statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
        )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    validation = [new_spans, example_gen, statistics_gen, schema_gen, example_validator]
    if validate_only:
        return tfx.dsl.Pipeline(
            pipeline_name=pipeline_name,
            pipeline_root=pipeline_root,
            components=validation,
            enable_cache=enable_cache,
            metadata_connection_config=metadata_connection_config,
            beam_pipeline_args=beam_pipeline_args,
        )
    # Bad data does not reach training: the run stops here, naming the anomalies.
    anomalies_gate = AnomaliesGate(
        anomalies=example_validator.outputs["anomalies"], allow_anomalies=allow_anomalies
    )
    # Validated: later runs may train on these spans where VideoExampleGen stored them.
    register_spans = RegisterSpans(
        ingest=ingest,
        examples_uri=example_gen.outputs["examples_uri"].future()[0].value,
        span_registry=registry,
    )
    register_spans.add_upstream_node(anomalies_gate)
    # The Transform only analyses (the class vocabulary): the Trainer applies its graph to the
    # examples as it reads them, so the data set is stored once.
    transform = batching.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=configs.PREPROCESSING_FN,
        custom_config={preprocessing.SAMPLED_FRAMES_KEY: train_options.sampled_frames},
        materialize=False,
        disable_statistics=True,  # statistics of JPEG strings say nothing
    )
    transform.add_upstream_node(anomalies_gate)
    trainer_config = {train.OPTIONS_KEY: train_options.to_json()}
    trainer_component = tfx.components.Trainer
    if tfjob:
        trainer_component = tfjob_trainer.Trainer
        trainer_config[tfjob_trainer.TFJOB_KEY] = tfjob
    if vertex_training:
        vertex = tfx.extensions.google_cloud_ai_platform
        trainer_component = vertex.Trainer
        trainer_config |= {
            vertex.ENABLE_VERTEX_KEY: True,
            vertex.VERTEX_REGION_KEY: vertex_training["region"],
            vertex.TRAINING_ARGS_KEY: {
                "project": vertex_training["project"],
                "worker_pool_specs": vertex_training["worker_pool_specs"],
            },
        }
    # Not Resolvers: Kubeflow Pipelines runs none (components/spans.py, served_model.py).
    plan = TrainingPlan(
        data_root=data_root,
        span_registry=registry,
        serving_dir=serving_dir,
        trainer_settings=json.dumps(trainer_config, sort_keys=True),
        span_pattern=span_pattern,
        window=span_window,
        train_without_new_data=train_without_new_data,
        run=run_id,
    )
    served = LatestPushedModel(
        serving_dir=serving_dir, version=plan.outputs["served_version"].future()[0].value
    )
    trainer = trainer_component(
        run_fn=configs.RUN_FN,
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        base_model=served.outputs["model"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=trainer_config,
    )
    # The Trainer's custom_config as TrainingPlan wrote it: the same settings plus the plan.
    trainer.exec_properties["custom_config"] = plan.outputs["trainer_config"].future()[0].value
    trainer.add_upstream_node(plan)
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=served.outputs["model"],
        example_splits=["eval"],
        eval_config=evaluation.eval_config(min_accuracy, train_options.eval_views),
    )
    # Their Beam workers hold TensorFlow functions (the Transform's analysis, the model) until
    # they exit: TF 2.16 finalizes them quietly there only with this guard.
    for step in (transform, evaluator):
        step.with_beam_pipeline_args([f"--beam_plugins={function_teardown.MODULE}"])
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_dir)
        ),
    )
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[
            *validation,
            anomalies_gate,
            register_spans,
            transform,
            plan,
            served,
            trainer,
            evaluator,
            pusher,
        ],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args,
    )


# TFX's flags for what Beam workers run (tfx/utils/dependency_utils.py, 1.16).
WORKER_DEPENDENCY_OPTIONS = (
    "extra_packages",
    "setup_file",
    "requirements_file",
    "worker_harness_container_image",
    "sdk_container_image",
)


def beam_args_with_workers(beam_args: list[str], image: str) -> list[str]:
    """`beam_args`, with `--sdk_container_image=image` unless they say what workers run.

    Without one of those flags, each Beam-based TFX executor packs TFX alone into an sdist for
    the workers (a 52 MB copy and `setup.py sdist`, 1.6 s here) in the temp folder, and leaves
    it there: about 200 MB a local run, on a Kubeflow node's disk every step. Remote workers
    need this project's code too: its image. The DirectRunner ignores the flag.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    given = PipelineOptions(flags=list(beam_args)).get_all_options(retain_unknown_options=True)
    if any(given.get(name) for name in WORKER_DEPENDENCY_OPTIONS):
        return list(beam_args)
    return [*beam_args, f"--sdk_container_image={image}"]
