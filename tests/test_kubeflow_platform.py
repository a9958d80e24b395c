"""kubeflow_platform.py: the flags' forms and the mirror each pipeline root's scheme gets (the
compiled spec's platform document is checked in tests/pipeline/test_kubeflow_runner.py)."""

import argparse

import pytest
from google.protobuf import json_format

import kubeflow_platform as kp


def _schema(title: str) -> dict:
    return {"artifactType": {"instanceSchema": f"title: {title}\ntype: object\n"}}


def _spec() -> dict:
    """Two tasks: one reads examples, one reads statistics only."""
    components = {
        "comp-stats": {
            "executorLabel": "stats_executor",
            "inputDefinitions": {"artifacts": {"examples": _schema("tfx.Examples")}},
        },
        "comp-check": {
            "executorLabel": "check_executor",
            "inputDefinitions": {"artifacts": {"statistics": _schema("tfx.ExampleStatistics")}},
        },
    }
    tasks = {
        "StatisticsGen": {"componentRef": {"name": "comp-stats"}, "taskInfo": {"name": "s"}},
        "Trainer": {"componentRef": {"name": "comp-check"}, "taskInfo": {"name": "t"}},
    }
    return {
        "pipelineInfo": {"name": "p"},
        "schemaVersion": "2.1.0",
        "components": components,
        "root": {"dag": {"tasks": tasks}},
    }


@pytest.mark.parametrize(
    "text, toleration",
    [
        ("nvidia.com/gpu=present:NoSchedule", {"key": "nvidia.com/gpu", "operator": "Equal"}),
        ("nvidia.com/gpu:NoSchedule", {"key": "nvidia.com/gpu", "operator": "Exists"}),
        ("dedicated", {"key": "dedicated", "operator": "Exists"}),
        ("pool=gpu", {"key": "pool", "operator": "Equal", "value": "gpu"}),
    ],
)
def test_toleration_forms(text, toleration):
    parsed = kp.toleration(text)
    assert toleration.items() <= parsed.items()
    assert parsed.get("effect") == ("NoSchedule" if ":" in text else None)
    assert ("value" in parsed) == ("=" in text)


@pytest.mark.parametrize("text", ["gpu:NoRun", "=x", "a b", "key=:NoSchedule", ""])
def test_malformed_tolerations_are_refused_by_name(text):
    with pytest.raises(ValueError, match="toleration"):
        kp.toleration(text)


def test_node_labels_and_disk_sizes():
    assert kp.node_label("cloud.google.com/gke-accelerator=nvidia-l4") == (
        "cloud.google.com/gke-accelerator",
        "nvidia-l4",
    )
    with pytest.raises(ValueError, match="KEY=VALUE"):
        kp.node_label("nvidia-l4")
    args = argparse.Namespace(
        step_disk="1.5Ti",
        step_disk_class="",
        trainer_toleration=[],
        trainer_node_selector=[],
        vertex_project=None,
        output="p.yaml",
        s3_credentials_secret=None,
        pipeline_root="gs://b/r",
    )
    assert kp.settings(args).has_disk
    for none in ("0", "0Gi", "0.0"):
        assert not kp.settings(argparse.Namespace(**{**vars(args), "step_disk": none})).has_disk
    for bad in ("100GB", "-1Gi", "lots"):  # the driver's MustParse would panic on these
        with pytest.raises(ValueError, match="--step-disk"):
            kp.settings(argparse.Namespace(**{**vars(args), "step_disk": bad}))


@pytest.mark.parametrize(
    "root, mirror",
    [
        ("gs://bucket/root", "/gcs"),
        ("s3://bucket/root", "/s3"),
        ("minio://mlpipeline/v2/artifacts", "/minio"),
        ("/mnt/pipelines", None),  # the launcher downloads nothing there
    ],
)
def test_the_volume_goes_where_the_launcher_copies_the_roots_artifacts(root, mirror):
    assert kp.mirror_path(root) == mirror
    pods = kp.PodSettings(tolerations=(kp.toleration("gpu:NoSchedule"),))
    configs = kp.executor_configs(_spec(), root, pods, trainer_trains=True)
    assert ("stats_executor" in configs) == (mirror is not None)
    if mirror:
        (volume,) = configs["stats_executor"].generic_ephemeral_volume
        assert volume.mount_path == mirror
    assert not configs["check_executor"].generic_ephemeral_volume  # no examples
    assert len(configs["check_executor"].tolerations) == 1  # the Trainer's pod trains
    launcher_only = kp.executor_configs(_spec(), root, pods, trainer_trains=False)
    assert "check_executor" not in launcher_only
    platform = kp.platform_spec(configs)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["check_executor"] == json_format.MessageToDict(configs["check_executor"])


def test_s3_credentials_secret_forms():
    minio, gcs = "minio://mlpipeline/v2/artifacts", "gs://b/r"
    assert kp.s3_secret(None, minio) == ("mlpipeline-minio-artifact", "accesskey", "secretkey")
    assert kp.s3_secret(None, gcs) is None and kp.s3_secret("none", minio) is None
    assert kp.s3_secret("aws", gcs) == ("aws", "accesskey", "secretkey")
    assert kp.s3_secret("aws:id:key", gcs) == ("aws", "id", "key")
    for bad in ("aws:id", ":id:key", "aws:id:"):
        with pytest.raises(ValueError, match="--s3-credentials-secret"):
            kp.s3_secret(bad, gcs)
