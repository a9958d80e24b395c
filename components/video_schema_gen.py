"""SchemaGen for videos: `frames` stays a variable-length feature whatever the data set shows.

With `infer_feature_shape=True`, TFDV makes a feature fixed-length when every example holds the
same number of values. A data set whose videos all reach `max_frames` (or a tiny one) would then
get `frames` with a fixed shape: the Transform's graph, which also runs inside the served model,
would expect that many frames from every future video, and preprocessing_fn's ragged handling
would see a dense tensor. A video's frame count varies by nature, so the inferred schema keeps
`frames` variable-length with at least one frame; every other inference stays TFDV's.
"""

import os

from absl import logging
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import v1 as tfx
from tfx.components.schema_gen import executor as schema_gen_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

from data import features as F


def with_variable_length_frames(schema: schema_pb2.Schema) -> schema_pb2.Schema:
    """`schema` with `frames` variable-length (no shape; value_count >= 1)."""
    for feature in schema.feature:
        if feature.name == F.FRAMES and feature.HasField("shape"):
            logging.info("Schema: %s stays variable-length (inferred shape dropped).", F.FRAMES)
            feature.ClearField("shape")
            feature.value_count.min = 1
    return schema


class SchemaGenExecutor(schema_gen_executor.Executor):
    """TFX's SchemaGen executor, then `frames` made variable-length again."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 (TFX's name)
        super().Do(input_dict, output_dict, exec_properties)
        uri = artifact_utils.get_single_uri(output_dict[standard_component_specs.SCHEMA_KEY])
        path = os.path.join(uri, schema_gen_executor.DEFAULT_FILE_NAME)
        schema = io_utils.parse_pbtxt_file(path, schema_pb2.Schema())
        io_utils.write_pbtxt_file(path, with_variable_length_frames(schema))


class SchemaGen(tfx.components.SchemaGen):
    """tfx.components.SchemaGen whose inferred schema keeps `frames` variable-length."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(SchemaGenExecutor)
