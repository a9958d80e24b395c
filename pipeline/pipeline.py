"""The one pipeline definition, used by local_runner.py and kubeflow_runner.py.

VideoExampleGen -> StatisticsGen -> (Import)SchemaGen -> ExampleValidator -> AnomaliesGate ->
Transform (analysis only) -> Trainer (raw examples through the Transform graph) -> Evaluator ->
Pusher. LatestPushedModel hands the model being served (the
latest blessed one) to the Trainer as base_model and to the Evaluator as baseline: a scheduled
retraining run continues from, and must beat, the model being served.
"""

from __future__ import annotations

import uuid

from tfx import v1 as tfx

from components import batching, tfjob_trainer
from components.anomalies_gate import AnomaliesGate
from components.served_model import Evaluator, LatestPushedModel
from components.video_example_gen import VideoExampleGen
from components.video_schema_gen import SchemaGen
from data.ingest import IngestOptions
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
    """
    if vertex_training and tfjob:
        raise ValueError("the Trainer runs on Vertex AI or as a TFJob, not both")
    if not validate_only and not serving_dir:
        raise ValueError("serving_dir is required unless validate_only")
    train_options = train_options or train.TrainOptions()
    example_gen = VideoExampleGen(input_base=data_root, ucf_split=ucf_split, options=ingest_options)
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
    validation = [example_gen, statistics_gen, schema_gen, example_validator]
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
    # Not a Resolver: Kubeflow Pipelines runs none (components/served_model.py).
    served = LatestPushedModel(
        serving_dir=serving_dir, lookup=uuid.uuid4().hex if enable_cache else ""
    )
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
            transform,
            served,
            trainer,
            evaluator,
            pusher,
        ],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args,
    )
