"""VideoExampleGen: a file-based TFX ExampleGen whose Beam executor runs data.ingest.

Splits are not hash buckets of TFX's output config: `train` and `eval` come from UCF101's list
files (eval = the official test list) or, for folder-per-class sets, from a hash of each clip's
group. The error report is written to `<examples uri>/errors.jsonl`, the examples per split to
`<examples uri>/counts.json` (data/counts.py) and to the artifact's `num_examples_<split>`.

With `spans` (NewSpans' value, components/spans.py) it ingests those spans of the data root into
one Examples artifact (`span`: the newest of them; custom property `spans`: all); when the
registry already holds exactly those spans, it ingests nothing and its output is the registered
Examples (the artifact's URI is theirs), so downstream steps read the stored copy. `examples_uri`
carries the examples' URI on (Kubeflow: the remote one) for RegisterSpans.
"""

from __future__ import annotations

import json
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
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components import spans as spans_lib
from data import ingest, video_sets
from data import spans as span_folders

UCF_SPLIT_KEY = "ucf_split"
# The input splits only feed the driver's fingerprint (size and mtime of every file matched, so
# caching reuses an ExampleGen only while its data is unchanged); the listing decides which
# video goes where. Together they match every file one and two folders down: class folders'
# videos and UCF101's lists (*/*), UCF101's videos (*/*/*). The names must be the output splits'.
FINGERPRINT_PATTERNS = ("*/*", "*/*/*")
INGEST_OPTIONS_KEY = "ingest_options"
SPANS_KEY = "spans"  # NewSpans' JSON: the spans to ingest ("" : the whole data root)
SPAN_PATTERN_KEY = "span_pattern"
SPAN_REGISTRY_KEY = "span_registry"
EXAMPLES_URI_KEY = "examples_uri"


class VideoExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        UCF_SPLIT_KEY: ExecutionParameter(type=int),
        INGEST_OPTIONS_KEY: ExecutionParameter(type=str),  # IngestOptions as JSON
        SPANS_KEY: ExecutionParameter(type=str, optional=True),
        SPAN_PATTERN_KEY: ExecutionParameter(type=str, optional=True),
        SPAN_REGISTRY_KEY: ExecutionParameter(type=str, optional=True),
    }
    OUTPUTS = {
        **standard_component_specs.FileBasedExampleGenSpec.OUTPUTS,
        EXAMPLES_URI_KEY: ChannelParameter(type=standard_artifacts.String),
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
        ingested = _ingested(exec_properties)
        if ingested:
            examples.span = max(ingested)
            examples.set_string_custom_property("spans", ",".join(map(str, ingested)))
        uri_out = (output_dict.get(EXAMPLES_URI_KEY) or [None])[0]
        known = ingested and spans_lib.registered_examples(
            exec_properties[SPAN_REGISTRY_KEY], json.loads(exec_properties[SPANS_KEY])
        )
        if known:
            # Nothing new: the registered copy of these spans is this run's examples.
            logging.info("VideoExampleGen: spans %s are ingested already: %s", ingested, known)
            examples.uri = known
            examples.set_int_custom_property("reused", 1)
        else:
            self._ingest(examples, exec_properties)
        examples.split_names = artifact_utils.encode_split_names(list(video_sets.SPLITS))
        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(
            examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP)
        )
        if uri_out is not None:  # Kubeflow: the entry point maps a mirror path back to the URI
            uri_out.value = examples.uri

    def _ingest(self, examples, exec_properties) -> None:
        """Ingests the listing into `examples.uri`: the splits, error report and counts."""
        options = ingest.IngestOptions.from_json(exec_properties[INGEST_OPTIONS_KEY])
        listing = _listing(exec_properties, options)
        with self._make_beam_pipeline() as pipeline:
            ingest.add_ingest(pipeline, listing, options, examples.uri)
        errors_path = os.path.join(examples.uri, ingest.ERRORS_FILE)
        summary = ingest.summarize(listing, errors_path)
        log = logging.warning if summary.bad else logging.info
        log("VideoExampleGen: %s; error report: %s", summary, errors_path)
        examples.set_int_custom_property("num_listed_videos", summary.listed)
        examples.set_int_custom_property("num_bad_videos", len(summary.bad))
        for split, count in summary.good.items():
            examples.set_int_custom_property(f"num_examples_{split}", count)
        ingest.write_beside_examples(examples.uri, summary, options)
        ingest.check_bad_fraction(summary, options.max_bad_fraction, errors_path)


def _ingested(exec_properties) -> list[int]:
    """The span numbers this execution stands for ([] without spans: the whole data root)."""
    value = exec_properties.get(SPANS_KEY)
    return [s["span"] for s in json.loads(value)["spans"]] if value else []


def _listing(exec_properties, options: ingest.IngestOptions) -> video_sets.VideoListing:
    """The videos to ingest: the spans given (labelled as every span is), or the data root."""
    data_root = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    split = exec_properties[UCF_SPLIT_KEY]
    value = exec_properties.get(SPANS_KEY)
    if not value:
        return video_sets.list_videos(data_root, split, options.eval_fraction)
    every = span_folders.list_spans(data_root, exec_properties[SPAN_PATTERN_KEY])
    given = [span_folders.Span(s["span"], s["path"]) for s in json.loads(value)["spans"]]
    return span_folders.list_span_videos(given, every, split, options.eval_fraction)


class VideoExampleGen(FileBasedExampleGen):
    """Videos under `input_base` (UCF101 layout or folder-per-class) -> Examples (train, eval).

    Args:
      input_base: the data root (local path or bucket URI).
      ucf_split: UCF101's official split, 1, 2 or 3 (ignored for folder-per-class sets).
      options: frame stride, max frames, short-side resize, JPEG quality, max bad fraction and
        the eval fraction of folder-per-class sets.
      spans: NewSpans' `ingest` value (usually `.future()[0].value`): the spans to ingest; with
        span_pattern (how span folders are named) and span_registry (components/spans.py).
        Without it, the whole data root.
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
        spans=None,
        span_pattern: str = span_folders.DEFAULT_PATTERN,
        span_registry: str | None = None,
    ):
        if ucf_split not in (1, 2, 3):
            raise ValueError(f"ucf_split must be 1, 2 or 3, got {ucf_split}")
        input_config = example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(name=s, pattern=p)
                for s, p in zip(video_sets.SPLITS, FINGERPRINT_PATTERNS, strict=True)
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
            examples_uri=types.Channel(type=standard_artifacts.String),
            spans=spans,
            span_pattern=span_pattern if spans is not None else None,
            span_registry=span_registry,
        )
        # FileBasedExampleGen.__init__ would build its own spec, without our two parameters.
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)
