"""The Kubernetes platform spec of the compiled Kubeflow Pipelines pipeline: the second YAML
document (`platforms: kubernetes: deploymentSpec: executors: <executor label>: {...}`, one
KubernetesExecutorConfig of kfp-kubernetes per executor) that Kubeflow Pipelines' API server reads
beside the PipelineSpec. TFX's KubeflowV2DagRunner writes only the first document.

What it holds, and why, as read in kubeflow/pipelines' backend at tags 2.0.0 to 2.17.0:

- Every step's pod downloads all its input artifacts before the step's command runs:
  backend/src/v2/component/launcher_v2.go (downloadArtifacts, LocalPathForURI) copies gs://B/K to
  /gcs/B/K, s3://B/K to /s3/B/K and minio://B/K to /minio/B/K, and uploads outputs from there
  afterwards. No task can opt out: only a URI of another scheme is skipped (with a warning), and
  from 2.15 an input whose metadata says `_kfp_workspace`, which the driver sets only on outputs
  of a workspace importer (backend/src/v2/driver/resolve.go, setWorkspaceFlag) and never stores
  in ML Metadata (backend/src/v2/metadata/converter.go). So the TFJob Trainer's launcher pod
  downloads the examples it never reads too, and needs the same disk.
- That mirror lives in the container's writable layer up to 2.2; from 2.3 the Argo compiler
  (backend/src/v2/compiler/argocompiler/container.go) mounts emptyDirs without a size limit
  (volumes gcs-scratch, s3-scratch, minio-scratch) at /gcs, /s3 and /minio of the step's
  container. Either way it is the node's disk, and UCF101's examples are 17-27 GB per step.
- The driver turns a step's KubernetesExecutorConfig into a pod-spec patch
  (backend/src/v2/driver/driver.go, from 2.14 k8s.go extendPodSpecPatch), which Argo applies as a
  strategic merge patch (argo-workflows workflow/controller/workflowpod.go, from v4
  workflow/util ApplyPodSpecPatch). There a container's volumeMounts merge by mountPath: a volume
  mounted at /gcs takes over gcs-scratch's mount (no duplicate mountPath; the emptyDir stays
  declared, unused), and up to 2.2 it is simply mounted there. Volumes merge by name, so the
  volume's name must not be a scratch volume's.
- What each backend version applies: node_selector and pvc_mount from 2.0, tolerations from 2.1,
  generic_ephemeral_volume from 2.2, empty_dir_mounts from 2.3. Up to 2.4.0 the driver parses the
  config strictly (jsonpb.UnmarshalString in backend/src/v2/cmd/driver/main.go): a field its
  version does not know fails the step. From 2.4.1 unknown fields are dropped.

So each step that reads or writes examples gets a generic ephemeral volume (a PersistentVolume
claimed for the pod's lifetime, of the flag's size and storage class) mounted at the mirror of the
pipeline root's scheme: Kubeflow Pipelines 2.2 to 2.17. On 2.0 and 2.1 compile with
`--step-disk 0` (the nodes' own disk then holds the mirror), and on 2.0 without tolerations.
Not chosen: pvc_mount (an existing claim shared by every run, which the launcher's never-deleted
downloads fill), empty_dir_mounts (2.3+, and still the node's disk: a size limit only evicts).
Steps that read s3:// data roots, serving dirs or checkpoints themselves (boto3) need credentials
the launcher keeps to itself: with --s3-credentials-secret (by default KFP's own MinIO secret for
a minio:// root) every step gets the secret's two keys as AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (secret_as_env, applied by the driver from 2.0).
The Trainer's tolerations and node selector apply to the pod that trains: the Trainer's, or with
a TFJob its replicas (components/tfjob_trainer.py), not the launcher pod that waits for them.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import IO

import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline import configs

MIRRORS = {"gs://": "/gcs", "s3://": "/s3", "minio://": "/minio"}  # the launcher's local copies
VOLUME = "artifact-mirror"  # not gcs-scratch & co.: volumes merge by name
LARGE = "tfx.Examples"  # a step that reads or writes these gets the volume
# KFP's own MinIO credentials, present in every namespace where pipelines run (multi-user too).
MINIO_SECRET = ("mlpipeline-minio-artifact", "accesskey", "secretkey")
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
QUANTITY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


@dataclasses.dataclass(frozen=True)
class PodSettings:
    """step_disk: a Kubernetes quantity, "0" for none; storage_class "": the cluster's default.
    tolerations: Kubernetes Toleration objects; node_selector: node labels, both for the Trainer."""

    step_disk: str = configs.KUBEFLOW_STEP_DISK
    storage_class: str = ""
    tolerations: tuple[dict, ...] = ()
    node_selector: tuple[tuple[str, str], ...] = ()
    s3_secret: tuple[str, str, str] | None = None  # (secret, access key's key, secret key's key)

    @property
    def has_disk(self) -> bool:
        return float(re.match(r"[\d.]+", self.step_disk).group()) > 0


def add_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "the steps' pods on Kubernetes (the .yaml spec's platform document; Kubeflow Pipelines "
        "2.2+, or 2.0/2.1 with --step-disk 0)"
    )
    group.add_argument(
        "--step-disk",
        default=configs.KUBEFLOW_STEP_DISK,
        help="volume for the launcher's copy of the inputs of each step that reads or writes "
        "examples, mounted at /gcs, /s3 or /minio after --pipeline-root (%(default)s: UCF101's "
        "examples are 17-27 GB); 0: none (Kubeflow Pipelines 2.0 and 2.1)",
    )
    group.add_argument(
        "--step-disk-class", default="", help="its storage class (default: the cluster's default)"
    )
    group.add_argument(
        "--trainer-toleration",
        action="append",
        default=[],
        metavar="KEY[=VALUE][:EFFECT]",
        help="lets the Trainer's pods (a TFJob's replicas) onto tainted GPU nodes, e.g. "
        "nvidia.com/gpu=present:NoSchedule; repeatable (Kubeflow Pipelines 2.1+)",
    )
    group.add_argument(
        "--trainer-node-selector",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="node label the Trainer's pods (a TFJob's replicas) need, e.g. "
        "cloud.google.com/gke-accelerator=nvidia-l4; repeatable",
    )
    group.add_argument(
        "--s3-credentials-secret",
        metavar="NAME[:ACCESS_KEY_KEY:SECRET_KEY_KEY]",
        help="Kubernetes secret whose two keys every step gets as AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, for s3:// data roots, serving dirs and checkpoints (default: "
        f"{':'.join(MINIO_SECRET)} with a minio:// pipeline root, KFP's own MinIO credentials; "
        "none otherwise, e.g. an AWS role); 'none': no secret",
    )


def toleration(text: str) -> dict:
    """KEY[=VALUE][:EFFECT] as a Kubernetes Toleration: Equal with a value, else Exists."""
    body, _, effect = text.rpartition(":") if ":" in text else (text, "", "")
    key, equals, value = body.partition("=")
    if effect and effect not in EFFECTS:
        raise ValueError(f"toleration {text!r}: the effect must be one of {', '.join(EFFECTS)}")
    if not LABEL_KEY.match(key) or (equals and not value):
        raise ValueError(f"toleration {text!r}: expected KEY[=VALUE][:EFFECT]")
    result = {"key": key, "operator": "Equal" if equals else "Exists", "value": value}
    return {k: v for k, v in (result | {"effect": effect}).items() if v}


def node_label(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not (equals and LABEL_KEY.match(key)):
        raise ValueError(f"node selector {text!r}: expected KEY=VALUE")
    return key, value


def s3_secret(text: str | None, pipeline_root: str) -> tuple[str, str, str] | None:
    """--s3-credentials-secret as (name, access key's key, secret key's key), or None."""
    if text is None:
        return MINIO_SECRET if pipeline_root.startswith("minio://") else None
    if text == "none":
        return None
    name, *keys = text.split(":")
    keys = keys or ["accesskey", "secretkey"]  # the keys of KFP's mlpipeline-minio-artifact
    if len(keys) != 2 or not all([name, *keys]):
        raise ValueError(
            f"--s3-credentials-secret {text!r}: expected NAME or NAME:ACCESS_KEY_KEY:SECRET_KEY_KEY"
        )
    return name, *keys


def settings(args: argparse.Namespace) -> PodSettings:
    """The flags as PodSettings; ValueError names a malformed or misplaced one."""
    if not QUANTITY.match(args.step_disk):
        raise ValueError(f"--step-disk {args.step_disk!r}: a Kubernetes quantity, e.g. 100Gi or 0")
    trainer_flags = args.trainer_toleration or args.trainer_node_selector
    if trainer_flags and (args.vertex_project or not args.output.endswith((".yaml", ".yml"))):
        raise ValueError(
            "--trainer-toleration and --trainer-node-selector are Kubernetes settings (a .yaml "
            "spec for Kubeflow Pipelines); Vertex AI picks machines by --machine-type"
        )
    return PodSettings(
        step_disk=args.step_disk,
        storage_class=args.step_disk_class,
        tolerations=tuple(map(toleration, args.trainer_toleration)),
        node_selector=tuple(map(node_label, args.trainer_node_selector)),
        s3_secret=s3_secret(args.s3_credentials_secret, args.pipeline_root),
    )


def mirror_path(pipeline_root: str) -> str | None:
    """Where the launcher copies this root's artifacts; None for a root it does not download."""
    return next(
        (path for scheme, path in MIRRORS.items() if pipeline_root.startswith(scheme)), None
    )


def _artifact_types(component: pipeline_spec_pb2.ComponentSpec) -> set[str]:
    definitions = [*component.input_definitions.artifacts.values()]
    definitions += component.output_definitions.artifacts.values()
    return {yaml.safe_load(d.artifact_type.instance_schema)["title"] for d in definitions}


def executor_configs(
    spec: dict, pipeline_root: str, pod: PodSettings, trainer_trains: bool
) -> dict[str, k8s.KubernetesExecutorConfig]:
    """{executor label: KubernetesExecutorConfig} of the steps that need one. trainer_trains:
    the Trainer's own pod trains (not a TFJob's or Vertex AI's machines)."""
    parsed = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    mirror = mirror_path(pipeline_root)
    found = {}
    for name, task in parsed.root.dag.tasks.items():
        component = parsed.components[task.component_ref.name]
        config = k8s.KubernetesExecutorConfig()
        if mirror and pod.has_disk and LARGE in _artifact_types(component):
            config.generic_ephemeral_volume.add(
                volume_name=VOLUME,
                mount_path=mirror,
                access_modes=["ReadWriteOnce"],
                size=pod.step_disk,
                default_storage_class=not pod.storage_class,
                storage_class_name=pod.storage_class,
            )
        label = component.executor_label
        if pod.s3_secret and "container" in spec["deploymentSpec"]["executors"][label]:
            secret, access_key, secret_key = pod.s3_secret
            config.secret_as_env.add(
                secret_name=secret,
                key_to_env=[
                    {"secret_key": access_key, "env_var": "AWS_ACCESS_KEY_ID"},
                    {"secret_key": secret_key, "env_var": "AWS_SECRET_ACCESS_KEY"},
                ],
            )
        if name == "Trainer" and trainer_trains:
            for item in pod.tolerations:
                config.tolerations.add(**item)
            if pod.node_selector:
                config.node_selector.labels.update(dict(pod.node_selector))
        if config.ByteSize():
            found[component.executor_label] = config
    return found


def tfjob_scheduling(pod: PodSettings) -> dict:
    """The Trainer's tolerations and node selector as components/tfjob_trainer.py's settings."""
    scheduling = {"tolerations": list(pod.tolerations), "node_selector": dict(pod.node_selector)}
    return {key: value for key, value in scheduling.items() if value}


def platform_spec(executors: dict[str, k8s.KubernetesExecutorConfig]) -> dict:
    """The platform document, as kfp's compiler writes it (PlatformSpec as JSON); {} if empty."""
    platform = pipeline_spec_pb2.PlatformSpec()
    for label, config in executors.items():
        deployment = platform.platforms["kubernetes"].deployment_spec
        deployment.executors[label].update(json_format.MessageToDict(config))
    return json_format.MessageToDict(platform)


def write_yaml(spec: dict, platform: dict, out: IO[str]) -> None:
    """The PipelineSpec, then the platform document where there is one (kfp's own layout)."""
    yaml.safe_dump_all([spec, platform] if platform else [spec], out, sort_keys=False)
