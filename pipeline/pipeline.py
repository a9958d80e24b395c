"""The one pipeline definition, used by local_runner.py and kubeflow_runner.py."""

from __future__ import annotations

from tfx import v1 as tfx

from components.video_example_gen import VideoExampleGen
from data.ingest import IngestOptions


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    ucf_split: int = 1,
    ingest_options: IngestOptions | None = None,
    schema_path: str | None = None,
    metadata_connection_config=None,
    beam_pipeline_args: list[str] | None = None,
    enable_cache: bool = False,
) -> tfx.dsl.Pipeline:
    """VideoExampleGen -> StatisticsGen -> (Import)SchemaGen -> ExampleValidator.

    schema_path: a curated schema to validate against (ImportSchemaGen); None infers one from
    this data (SchemaGen), which can then only flag problems inside this one data set.
    """
    example_gen = VideoExampleGen(input_base=data_root, ucf_split=ucf_split, options=ingest_options)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    if schema_path:
        schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path)
    else:
        schema_gen = tfx.components.SchemaGen(
            statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
        )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args,
    )
