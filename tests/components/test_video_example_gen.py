"""The ExampleGen's executor on real videos: splits, error report in the artifact, failure limit."""

import json

import pytest
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.video_example_gen import Executor, VideoExampleGen
from data import ingest, ucf101
from tests.data.test_ingest import IN_PROCESS, read_examples, value

pytestmark = pytest.mark.slow  # runs TFX components


def _run_executor(data_root, uri, options):
    component = VideoExampleGen(input_base=str(data_root), ucf_split=1, options=options)
    exec_properties = {
        k: proto_utils.proto_to_json(v) if hasattr(v, "DESCRIPTOR") else v
        for k, v in component.exec_properties.items()
    }
    examples = standard_artifacts.Examples()
    examples.uri = str(uri)
    executor = Executor(BaseBeamExecutor.Context(beam_pipeline_args=IN_PROCESS))
    executor.Do({}, {"examples": [examples]}, exec_properties)
    return examples


def test_splits_and_error_report_inside_the_artifact(broken_root, tmp_path):
    root, bad = broken_root
    examples = _run_executor(root, tmp_path, ingest.IngestOptions(max_bad_fraction=0.5))
    assert examples.split_names == '["train", "eval"]'
    listing = ucf101.list_videos(str(root), 1)
    for split in ("train", "eval"):
        ids = {
            value(e["video_id"])[0].decode()
            for e in read_examples(tmp_path / f"Split-{split}" / "*.gz")
        }
        assert ids == {r.video_id for r in listing.split(split)} - set(bad)
    lines = [json.loads(x) for x in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert sorted(ucf101.stem(x["path"]) for x in lines) == sorted(bad)
    assert examples.get_int_custom_property("num_bad_videos") == len(bad)
    assert examples.get_int_custom_property("num_listed_videos") == len(listing.records)


def test_fails_past_the_bad_fraction_naming_the_report(broken_root, tmp_path):
    root, bad = broken_root
    listed = len(ucf101.list_videos(str(root), 1).records)
    options = ingest.IngestOptions(max_bad_fraction=(len(bad) - 0.5) / listed)  # just under
    with pytest.raises(ingest.TooManyBadVideosError, match=r"errors\.jsonl"):
        _run_executor(root, tmp_path, options)


def test_component_records_its_settings():
    options = ingest.IngestOptions(frame_stride=2, short_side=128)
    component = VideoExampleGen(input_base="/data/ucf", ucf_split=3, options=options)
    props = component.exec_properties
    assert props["ucf_split"] == 3
    assert ingest.IngestOptions.from_json(props["ingest_options"]) == options
    with pytest.raises(ValueError, match="ucf_split"):
        VideoExampleGen(input_base="/data/ucf", ucf_split=4)
