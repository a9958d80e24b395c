"""The ExampleGen's executor on real videos: splits, error report in the artifact, failure limit."""

import json

import numpy as np
import pytest
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.video_example_gen import Executor, VideoExampleGen
from data import ingest, synthetic, video_sets
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
    listing = video_sets.list_videos(str(root), 1)
    for split in ("train", "eval"):
        ids = {
            value(e["video_id"])[0].decode()
            for e in read_examples(tmp_path / f"Split-{split}" / "*.gz")
        }
        assert ids == {r.video_id for r in listing.split(split)} - set(bad)
    lines = [json.loads(x) for x in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert sorted(video_sets.stem(x["path"]) for x in lines) == sorted(bad)
    assert examples.get_int_custom_property("num_bad_videos") == len(bad)
    assert examples.get_int_custom_property("num_listed_videos") == len(listing.records)


def test_fails_past_the_bad_fraction_naming_the_report(broken_root, tmp_path):
    root, bad = broken_root
    listed = len(video_sets.list_videos(str(root), 1).records)
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


def _fingerprint(component) -> str:
    """What TFX's file-based drivers (LocalDagRunner's and Kubeflow V2's) compute for caching."""
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(component.exec_properties["input_config"], input_config)
    fingerprint, _, _ = example_gen_utils.calculate_splits_fingerprint_span_and_version(
        component.exec_properties["input_base"], input_config.splits
    )
    return fingerprint


@pytest.mark.parametrize("videos_dir", ["UCF-101", "."])  # UCF101 layout, folder-per-class
def test_changing_one_video_inside_a_class_folder_changes_the_fingerprint(tmp_path, videos_dir):
    root = tmp_path / "data"
    frames = np.random.default_rng(0).integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    for name in ("Wave", "Clap"):
        (root / videos_dir / name).mkdir(parents=True)
        for clip in (1, 2):
            path = root / videos_dir / name / f"v_{name}_g01_c0{clip}.avi"
            synthetic.write_video(path, frames[: 3 + clip], fps=25)
    component = VideoExampleGen(input_base=str(root))
    before = _fingerprint(component)
    top_level_only = example_gen_utils.calculate_splits_fingerprint_span_and_version(
        str(root), [example_gen_pb2.Input.Split(name="all", pattern="*")]
    )
    # The same file, re-encoded in place: its folders' listings and times stay as they were.
    synthetic.write_video(root / videos_dir / "Clap" / "v_Clap_g01_c01.avi", frames, fps=25)
    assert _fingerprint(component) != before
    assert _fingerprint(VideoExampleGen(input_base=str(root))) == _fingerprint(component)
    if videos_dir != ".":  # what a top-level pattern (the old fingerprint) would have seen
        assert top_level_only == example_gen_utils.calculate_splits_fingerprint_span_and_version(
            str(root), [example_gen_pb2.Input.Split(name="all", pattern="*")]
        )


def test_ingests_only_the_spans_given_and_hands_on_registered_ones(tmp_path):
    """NewSpans' value names span 1 (span 0 is registered): only span 1's videos are ingested.
    Once span 1 is registered, the same value ingests nothing: the output is the registered
    Examples (its URI), and nothing is written where the new artifact would have been."""
    from components import spans as spans_lib
    from data import spans
    from tests.helpers import add_span

    data, registry = tmp_path / "data", str(tmp_path / "registry")
    for number in (0, 1):
        add_span(data, number)
    both = spans_lib.resolve_ingest(str(data), spans.DEFAULT_PATTERN, registry)
    spans_lib.register(registry, {"spans": both["spans"][:1]}, "/e0")  # span 0: ingested before
    given = spans_lib.resolve_ingest(str(data), spans.DEFAULT_PATTERN, registry)
    assert [s["span"] for s in given["spans"]] == [1]
    component = VideoExampleGen(
        input_base=str(data), spans=spans_lib.dumps(given), span_registry=registry
    )
    exec_properties = {
        k: proto_utils.proto_to_json(v) if hasattr(v, "DESCRIPTOR") else v
        for k, v in component.exec_properties.items()
    }

    def run(uri):
        examples, uri_out = standard_artifacts.Examples(), standard_artifacts.String()
        examples.uri, uri_out.uri = str(uri), str(tmp_path / f"{uri.name}.value")
        executor = Executor(BaseBeamExecutor.Context(beam_pipeline_args=IN_PROCESS))
        executor.Do({}, {"examples": [examples], "examples_uri": [uri_out]}, exec_properties)
        return examples, uri_out.value

    examples, uri = run(tmp_path / "first")
    assert uri == examples.uri == str(tmp_path / "first")
    listing = video_sets.list_videos(str(data / "span-1"), 1)
    ids = {value(e["video_id"])[0].decode() for e in read_examples(tmp_path / "first/Split-*/*.gz")}
    assert ids == {r.video_id for r in listing.records} and len(ids) == 12
    paths = {value(e["label_name"])[0].decode() for e in read_examples(tmp_path / "first/*/*.gz")}
    assert paths == {"ShiftLeft", "ShiftRight"}
    assert examples.span == 1 and examples.get_string_custom_property("spans") == "1"

    spans_lib.register(registry, given, examples.uri)
    again, uri = run(tmp_path / "second")
    assert again.uri == uri == str(tmp_path / "first")
    assert again.get_int_custom_property("reused") == 1
    assert again.split_names == '["train", "eval"]'
    assert not (tmp_path / "second").exists() or not list((tmp_path / "second").iterdir())
