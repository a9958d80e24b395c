"""pipeline/kfp_entrypoint.py without a TFX run: what TFX is given, what the launcher gets back."""

from __future__ import annotations

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2 as pb
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as tfx_utils

from pipeline import kfp_entrypoint as entrypoint

ROOT = "minio://mlpipeline/v2/artifacts/p/run/"
EXAMPLES = {"schemaTitle": "tfx.Examples"}


def _executor_input() -> dict:
    """An ExecutorInput as KFP 2.17's driver writes it for StatisticsGen (PUBLISH_LOGS=true)."""
    return {
        "inputs": {
            "artifacts": {
                "examples": {
                    "artifacts": [
                        {
                            "name": "7",
                            "uri": ROOT + "ExampleGen/u1/examples",
                            "type": {"instanceSchema": ""},
                            "metadata": {"split_names": '["train"]'},
                        }
                    ]
                }
            }
        },
        "outputs": {
            "artifacts": {
                "statistics": {
                    "artifacts": [
                        {
                            "name": "statistics",
                            "uri": ROOT + "StatisticsGen/u2/statistics",
                            "type": {"schemaTitle": "tfx.ExampleStatistics"},
                        }
                    ]
                },
                "executor-logs": {
                    "artifacts": [
                        {
                            "name": "executor-logs",
                            "uri": ROOT + "StatisticsGen/u2/executor-logs-0",
                            "type": {"schemaTitle": "system.Artifact"},
                        }
                    ]
                },
            },
            "outputFile": "/minio/mlpipeline/v2/artifacts/p/run/StatisticsGen/u2/output_metadata.json",
        },
    }


INPUTS_SPEC = {"artifacts": {"examples": {"artifactType": EXAMPLES}}}


def test_tfx_cannot_read_the_launchers_executor_logs():
    """The failure on KFP 2.5+ with the stock manifests, with TFX 1.16's own parser."""
    parsed = json_format.ParseDict(_executor_input(), pb.ExecutorInput())
    with pytest.raises(ImportError, match="system.Artifact"):
        tfx_utils.parse_raw_artifact_dict(parsed.outputs.artifacts)


def test_in_the_pod_tfx_reads_the_mirror_and_never_sees_executor_logs(tmp_path):
    given = _executor_input()
    tfx_input, launcher_outputs = entrypoint.for_tfx(given, INPUTS_SPEC, True, str(tmp_path))
    assert launcher_outputs == ["executor-logs"]
    assert set(tfx_input["outputs"]["artifacts"]) == {"statistics"}
    (examples,) = tfx_input["inputs"]["artifacts"]["examples"]["artifacts"]
    assert examples["type"] == EXAMPLES  # typed from the component's inputs spec
    assert (
        examples["uri"] == f"{tmp_path}/minio/mlpipeline/v2/artifacts/p/run/ExampleGen/u1/examples"
    )
    assert given["inputs"]["artifacts"]["examples"]["artifacts"][0]["uri"].startswith("minio://")
    parsed = json_format.ParseDict(tfx_input, pb.ExecutorInput())
    outputs = tfx_utils.parse_raw_artifact_dict(parsed.outputs.artifacts)  # TFX's parser takes it
    assert outputs["statistics"][0].uri.startswith(f"{tmp_path}/minio/")

    entrypoint.make_output_dirs(tfx_input)
    assert (tmp_path / "minio/mlpipeline/v2/artifacts/p/run/StatisticsGen/u2/statistics").is_dir()
    assert not (
        tmp_path / "minio/mlpipeline/v2/artifacts/p/run/StatisticsGen/u2/executor-logs-0"
    ).exists()


def test_the_executor_output_names_remote_uris_and_leaves_executor_logs_out(tmp_path):
    local = f"{tmp_path}/minio/mlpipeline/v2/artifacts/p/run/Evaluator/u3/blessing"
    written = {
        "artifacts": {
            "blessing": {
                "artifacts": [
                    {
                        "uri": local,
                        "metadata": {
                            "blessed": 1.0,
                            "current_model": f"{tmp_path}/s3/bucket/Trainer/u4/model",
                            "nested": {"paths": [f"{tmp_path}/gcs/b/k", "/elsewhere/x"]},
                        },
                    }
                ]
            },
            "executor-logs": {"artifacts": [{"uri": "stale"}]},
        }
    }
    back = entrypoint.for_kfp(written, ["executor-logs"], str(tmp_path))
    assert set(back["artifacts"]) == {"blessing"}
    (blessing,) = back["artifacts"]["blessing"]["artifacts"]
    assert blessing["uri"] == "minio://mlpipeline/v2/artifacts/p/run/Evaluator/u3/blessing"
    assert blessing["metadata"] == {
        "blessed": 1.0,
        "current_model": "s3://bucket/Trainer/u4/model",
        "nested": {"paths": ["gs://b/k", "/elsewhere/x"]},
    }


@pytest.mark.parametrize(
    "uri, path",
    [
        ("gs://b/k/x", "/r/gcs/b/k/x"),
        ("minio://mlpipeline/v2/a", "/r/minio/mlpipeline/v2/a"),
        ("s3://b/k", "/r/s3/b/k"),
        ("/local/path", None),
        ("hdfs://n/p", None),
    ],
)
def test_mirror_paths_are_the_launchers(uri, path):
    assert entrypoint.local_path(uri, "/r") == path
    if path:
        assert entrypoint.remote_uri(path, "/r") == uri
    assert entrypoint.remote_uri("/r/gcsx/b", "/r") is None


def test_artifacts_stay_remote_outside_the_pod(monkeypatch):
    """Only under KFP's launcher (KFP_POD_NAME), with Beam in the pod and no replicas elsewhere."""
    monkeypatch.delenv("KFP_POD_NAME", raising=False)
    assert not entrypoint.reads_in_pod("tfx.components.statistics_gen.executor.Executor", [])
    monkeypatch.setenv("KFP_POD_NAME", "p")
    assert entrypoint.reads_in_pod("x.Executor", ["--direct_num_workers=2"])
    assert entrypoint.reads_in_pod("x.Executor", ["--runner=DirectRunner"])
    assert entrypoint.reads_in_pod("x.Executor", ["--runner", "direct"])
    assert not entrypoint.reads_in_pod("x.Executor", ["--runner", "DataflowRunner"])
    assert not entrypoint.reads_in_pod("components.tfjob_trainer.TFJobExecutor", [])


def test_remote_artifacts_must_be_on_gcs_when_read_elsewhere():
    with pytest.raises(entrypoint.StorageError, match="inputs artifact 'examples' is at minio://"):
        entrypoint.for_tfx(_executor_input(), INPUTS_SPEC, False)
    on_gcs = _executor_input()
    for side in ("inputs", "outputs"):
        for listed in on_gcs[side]["artifacts"].values():
            for artifact in listed["artifacts"]:
                artifact["uri"] = artifact["uri"].replace("minio://", "gs://")
    tfx_input, _ = entrypoint.for_tfx(on_gcs, INPUTS_SPEC, False)
    (examples,) = tfx_input["inputs"]["artifacts"]["examples"]["artifacts"]
    assert examples["uri"].startswith("gs://mlpipeline/")


def test_storage_the_steps_cannot_read_is_refused_at_compile_time():
    check = entrypoint.check_storage
    check("minio://mlpipeline/v2/artifacts", "s3://videos/ucf101", "s3://serving", [], False)
    check("gs://b/root", "gs://b/data", "gs://b/serving", ["--runner=DataflowRunner"], True)
    with pytest.raises(entrypoint.StorageError, match="data root minio://b/d: MinIO's buckets"):
        check("minio://b/root", "minio://b/d", "s3://b/serving", [], False)
    with pytest.raises(entrypoint.StorageError, match="the Trainer's replicas"):
        check("s3://b/root", "s3://b/d", "s3://b/serving", [], True)
    with pytest.raises(entrypoint.StorageError, match="Beam's FlinkRunner workers"):
        check("minio://b/root", "s3://b/d", "s3://b/serving", ["--runner", "FlinkRunner"], False)
    assert entrypoint.default_serving_dir("minio://mlpipeline/v2/artifacts/") == (
        "s3://mlpipeline/v2/artifacts/serving"
    )
