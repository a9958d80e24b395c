"""VideoExampleGen: a file-based TFX ExampleGen whose Beam executor runs data.ingest.

Splits are not hash buckets of TFX's output config: `train` and `eval` come from UCF101's list
files (eval = the official test list) or, for folder-per-class sets, from a hash of each clip's
group. The error report is written to `<examples uri>/errors.jsonl`, the examples per split to
`<examples uri>/counts.json` (data/counts.py) and to the artifact's `num_examples_<split>`.
"""

from __future__ import annotations

import os

import apache_beam as beam
from absl import logging
from tfx import types
from tfx.components.example_gen import driver, write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from data import counts, ingest, ucf101

UCF_SPLIT_KEY = "ucf_split"
# The input splits only feed the driver's fingerprint (size and mtime of every file matched, so
# caching reuses an ExampleGen only while its data is unchanged); the listing decides which
# video goes where. Together they match every file one and two folders down: class folders'
# videos and UCF101's lists (*/*), UCF101's videos (*/*/*). The names must be the output splits'.
FINGERPRINT_PATTERNS = ("*/*", "*/*/*")
INGEST_OPTIONS_KEY = "ingest_options"


class VideoExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        UCF_SPLIT_KEY: ExecutionParameter(type=int),
        INGEST_OPTIONS_KEY: ExecutionParameter(type=str),  # IngestOptions as JSON
    }


class Executor(BaseExampleGenExecutor):
    """Lists the videos, decodes them in Beam, writes the splits and the error report.

    Writes with data.ingest's own Beam graph, not TFX's WriteSplit: that reshuffles every
    example before writing, which on a local runner gathers the whole data set (gigabytes of
    JPEG) in the runner's process.
    """

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        raise NotImplementedError("VideoExampleGen writes its splits in Do")

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY]
        )
        examples.split_names = artifact_utils.encode_split_names(list(ucf101.SPLITS))
        options = ingest.IngestOptions.from_json(exec_properties[INGEST_OPTIONS_KEY])
        listing = ucf101.list_videos(
            exec_properties[standard_component_specs.INPUT_BASE_KEY],
            exec_properties[UCF_SPLIT_KEY],
            options.eval_fraction,
        )
        with self._make_beam_pipeline() as pipeline:
            ingest.add_ingest(pipeline, listing, options, examples.uri)
        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(
            examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP)
        )
        errors_path = os.path.join(examples.uri, ingest.ERRORS_FILE)
        summary = ingest.summarize(listing, errors_path)
        log = logging.warning if summary.bad else logging.info
        log("VideoExampleGen: %s; error report: %s", summary, errors_path)
        examples.set_int_custom_property("num_listed_videos", summary.listed)
        examples.set_int_custom_property("num_bad_videos", len(summary.bad))
        for split, count in summary.good.items():
            examples.set_int_custom_property(f"num_examples_{split}", count)
        counts.write(examples.uri, summary.good)  # the Trainer's epoch size, without a read
        ingest.check_bad_fraction(summary, options.max_bad_fraction, errors_path)


class VideoExampleGen(FileBasedExampleGen):
    """Videos under `input_base` (UCF101 layout or folder-per-class) -> Examples (train, eval).

    Args:
      input_base: the data root (local path or bucket URI).
      ucf_split: UCF101's official split, 1, 2 or 3 (ignored for folder-per-class sets).
      options: frame stride, max frames, short-side resize, JPEG quality, max bad fraction and
        the eval fraction of folder-per-class sets.
    """

    SPEC_CLASS = VideoExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
    # A FileBasedExampleGen: LocalDagRunner and Vertex AI Pipelines run TFX's file-based driver
    # (span, version and fingerprint of input_base) before the executor. Kubeflow Pipelines'
    # open-source backend runs no such pre-cache hook; the executor needs none of its outputs.
    DRIVER_CLASS = driver.FileBasedDriver

    def __init__(
        self,
        input_base: str,
        ucf_split: int = 1,
        options: ingest.IngestOptions | None = None,
    ):
        if ucf_split not in (1, 2, 3):
            raise ValueError(f"ucf_split must be 1, 2 or 3, got {ucf_split}")
        input_config = example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(name=s, pattern=p)
                for s, p in zip(ucf101.SPLITS, FINGERPRINT_PATTERNS, strict=True)
            ]
        )
        spec = VideoExampleGenSpec(
            input_base=input_base,
            input_config=input_config,
            output_config=example_gen_pb2.Output(),
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            ucf_split=ucf_split,
            ingest_options=(options or ingest.IngestOptions()).to_json(),
            examples=types.Channel(type=standard_artifacts.Examples),
        )
        # FileBasedExampleGen.__init__ would build its own spec, without our two parameters.
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)
