"""Validation under LocalDagRunner (create_pipeline(validate_only=True)), and the curated schema
flagging changed data."""

import re

import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx import v1 as tfx
from tfx.utils import io_utils

from data import ingest, synthetic
from pipeline import configs, statistics
from pipeline.pipeline import create_pipeline
from tests.data.test_ingest import IN_PROCESS
from tests.helpers import PIPELINE_COMPONENTS, copy_with_new_class

pytestmark = pytest.mark.slow  # runs TFX components

COMPONENTS = ["VideoExampleGen", "StatisticsGen", "ExampleValidator"]


def _run(root, data_root, schema_path):
    pipeline_root = root / "pipeline_root"
    tfx.orchestration.LocalDagRunner().run(
        create_pipeline(
            pipeline_name=configs.PIPELINE_NAME,
            pipeline_root=str(pipeline_root),
            data_root=str(data_root),
            ingest_options=configs.SYNTHETIC_INGEST_OPTIONS,
            schema_path=schema_path,
            validate_only=True,
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                str(root / "metadata.sqlite")
            ),
            beam_pipeline_args=IN_PROCESS,
        )
    )
    return pipeline_root


def _anomalies(pipeline_root):
    """{split: Anomalies} from the ExampleValidator's output."""
    result = {}
    for split in ("train", "eval"):
        (path,) = tf.io.gfile.glob(
            str(pipeline_root / "ExampleValidator" / "anomalies" / "*" / f"Split-{split}" / "*.pb")
        )
        result[split] = anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))
    return result


@pytest.fixture(scope="session")
def inferred_run(small_synthetic_root, tmp_path_factory):
    """The (small) embedded set with SchemaGen inferring the schema."""
    return _run(tmp_path_factory.mktemp("inferred"), small_synthetic_root, schema_path=None)


@pytest.fixture(scope="session")
def changed_run(small_synthetic_root, tmp_path_factory):
    """A second data set with a seventh class, validated against the curated schema."""
    root = tmp_path_factory.mktemp("changed")
    data_root = copy_with_new_class(small_synthetic_root, root / "data")
    return _run(root, data_root, schema_path=configs.SYNTHETIC_SCHEMA)


def test_pipeline_runs_end_to_end_without_anomalies(inferred_run):
    for component in COMPONENTS + ["SchemaGen"]:
        assert (inferred_run / component).is_dir(), component
    (examples,) = (inferred_run / "VideoExampleGen" / "examples").iterdir()
    assert (examples / "errors.jsonl").read_text() == ""
    for split in ("train", "eval"):
        assert list((examples / f"Split-{split}").glob("*.gz"))
    for split, anomalies in _anomalies(inferred_run).items():
        assert not anomalies.anomaly_info, (split, anomalies)


def test_curated_schema_is_the_inferred_one_with_domains(inferred_run):
    (path,) = (inferred_run / "SchemaGen" / "schema").glob("*/schema.pbtxt")
    inferred = io_utils.SchemaReader().read(str(path))
    curated = io_utils.SchemaReader().read(configs.SYNTHETIC_SCHEMA)
    assert {(f.name, f.type) for f in inferred.feature} == {
        (f.name, f.type) for f in curated.feature
    }


def test_changed_label_set_is_an_anomaly(changed_run):
    for split, anomalies in _anomalies(changed_run).items():
        flagged = set(anomalies.anomaly_info)
        assert {"label", "label_name"} <= flagged, (split, flagged)
        assert "Wave" in anomalies.anomaly_info["label_name"].description
        assert not flagged - {"label", "label_name"}, flagged


def test_curated_schema_matches_the_embedded_set_and_configs():
    schema = io_utils.SchemaReader().read(configs.SYNTHETIC_SCHEMA)
    features = {f.name: f for f in schema.feature}
    assert set(features) == {
        "frames",
        "label",
        "label_name",
        "video_id",
        "group",
        "num_frames",
        "fps",
        "time_step",
        "height",
        "width",
    }
    assert features["label"].int_domain.max == len(synthetic.SPEC.classes) - 1
    (names,) = [d for d in schema.string_domain if d.name == "label_name"]
    assert tuple(sorted(names.value)) == tuple(sorted(synthetic.SPEC.classes))
    assert features["num_frames"].int_domain.max == configs.SYNTHETIC_INGEST_OPTIONS.max_frames
    assert features["frames"].value_count.max == configs.SYNTHETIC_INGEST_OPTIONS.max_frames
    assert synthetic.SPEC.num_frames <= configs.SYNTHETIC_INGEST_OPTIONS.max_frames
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,127}", configs.PIPELINE_NAME)


def test_missing_frames_are_an_anomaly(tmp_path):
    """Statistics of examples without `frames` (TFDV, as ExampleValidator runs it)."""
    import tensorflow_data_validation as tfdv

    path = str(tmp_path / "no_frames.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(6):
            example = tf.train.Example()
            f = example.features.feature
            f["label"].int64_list.value.append(i)
            f["label_name"].bytes_list.value.append(synthetic.SPEC.classes[i].encode())
            for name in ("video_id", "group"):
                f[name].bytes_list.value.append(f"v_{i}".encode())
            for name, v in (("num_frames", 0), ("height", 64), ("width", 64)):
                f[name].int64_list.value.append(v)
            f["fps"].float_list.value.append(25.0)
            writer.write(example.SerializeToString())
    stats = tfdv.generate_statistics_from_tfrecord(path)
    schema = io_utils.SchemaReader().read(configs.SYNTHETIC_SCHEMA)
    anomalies = tfdv.validate_statistics(stats, schema)
    assert {"frames", "num_frames"} <= set(anomalies.anomaly_info), anomalies
    assert isinstance(schema, schema_pb2.Schema)
    # With what the pipeline's StatisticsGen computes (`frames` as image bytes), the same.
    stats = tfdv.generate_statistics_from_tfrecord(path, stats_options=statistics.stats_options())
    anomalies = tfdv.validate_statistics(stats, schema)
    assert {"frames", "num_frames"} <= set(anomalies.anomaly_info), anomalies


def test_statistics_of_frames_are_their_counts_and_sizes(inferred_run):
    """`frames` keeps presence and value counts (what the schemas check) and gets byte sizes,
    not the top values and uniques of JPEG strings."""
    import tensorflow_data_validation as tfdv

    (path,) = (inferred_run / "StatisticsGen" / "statistics").glob("*/Split-train/*.pb")
    stats = tfdv.load_stats_binary(str(path))
    (frames,) = [
        f for f in stats.datasets[0].features if f.path.step == ["frames"] or f.name == "frames"
    ]
    assert frames.WhichOneof("stats") == "bytes_stats"
    assert frames.bytes_stats.common_stats.min_num_values == synthetic.SPEC.num_frames
    assert frames.bytes_stats.max_num_bytes > 0


def test_create_pipeline_wires_the_components():
    p = create_pipeline(
        "p", "/tmp/root", "/data", ingest_options=ingest.IngestOptions(), validate_only=True
    )
    assert [c.id for c in p.components] == [
        "NewSpans",
        "VideoExampleGen",
        "StatisticsGen",
        "SchemaGen",
        "ExampleValidator",
    ]
    p = create_pipeline("p", "/tmp/root", "/data", "/serving", schema_path=configs.SYNTHETIC_SCHEMA)
    assert {c.id for c in p.components} == set(PIPELINE_COMPONENTS)
    # The Beam steps whose workers hold TensorFlow functions at exit get the teardown guard.
    guarded = {
        c.id
        for c in p.components
        if "--beam_plugins=model.function_teardown"
        in getattr(c.executor_spec, "beam_pipeline_args", [])
    }
    assert guarded == {"Transform", "Evaluator"}
    with pytest.raises(ValueError, match="serving_dir"):
        create_pipeline("p", "/tmp/root", "/data")


def test_beam_workers_are_given_the_image_so_tfx_leaves_no_sdist(tmp_path, monkeypatch):
    """TFX's Beam executors pack TFX into an sdist in the temp folder, and leave it, unless the
    flags say what workers run: create_pipeline names the image; flags that say it are kept."""
    import os
    import tempfile

    from tfx.utils import dependency_utils

    from pipeline.pipeline import beam_args_with_workers

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where TFX writes the sdist
    p = create_pipeline(
        "p",
        "/tmp/root",
        "/data",
        "/serving",
        schema_path=configs.SYNTHETIC_SCHEMA,
        beam_pipeline_args=["--direct_num_workers=1"],
        worker_image="registry.example/video-swin-tfx:1",
    )
    given = ["--direct_num_workers=1", "--sdk_container_image=registry.example/video-swin-tfx:1"]
    assert p.beam_pipeline_args == given
    assert dependency_utils.make_beam_dependency_flags(given) == given  # TFX's own check
    assert not os.listdir(tmp_path)
    for own in (["--runner=DataflowRunner", "--sdk_container_image=gcr.io/p/i"],
                ["--setup_file", "./setup.py"], ["--extra_package=dist/x.tar.gz"]):  # fmt: skip
        assert beam_args_with_workers(own, "img") == own
    # What is avoided: without it, TFX builds its sdist for the very same flags.
    built = dependency_utils.make_beam_dependency_flags(["--direct_num_workers=1"])
    assert built[-1].startswith("--extra_package=") and os.path.isfile(built[-1].split("=")[1])


def test_a_run_writes_its_report_under_its_own_pipeline_root(small_synthetic_root, tmp_path):
    """local_runner.py as a user runs it, from an empty working directory: the summary lands in
    <pipeline root>/report, and nothing is written outside the roots it was given."""
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cwd, roots = tmp_path / "cwd", tmp_path / "roots"
    cwd.mkdir()
    command = [
        sys.executable,
        os.path.join(repo, "local_runner.py"),
        "--data-root",
        str(small_synthetic_root),
        "--schema",
        configs.SYNTHETIC_SCHEMA,
        "--validate-only",
        "--pipeline-root",
        str(roots / "pipeline_root"),
        "--metadata",
        str(roots / "metadata.sqlite"),
        "--serving-dir",
        str(roots / "serving"),
        "--beam-pipeline-args=" + " ".join(IN_PROCESS),
    ]
    env = dict(os.environ, PYTHONPATH=repo)
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (roots / "pipeline_root" / "report" / "summary.txt").read_text()
    assert summary.startswith("Pipeline finished") and "Validation only" in summary
    assert list(cwd.iterdir()) == []
    assert {p.name for p in roots.iterdir()} <= {"pipeline_root", "metadata.sqlite", "serving"}
    assert "Traceback" not in proc.stdout + proc.stderr
