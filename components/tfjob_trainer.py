"""The Trainer as a multi-worker TFJob of Kubeflow's Training Operator.

On Kubeflow Pipelines the stock Trainer step is one pod. This `Trainer` (node id still "Trainer")
keeps the step as a small launcher: its executor creates a `kubeflow.org/v1` TFJob (a Chief and
workers-1 Workers, each running this image), waits for it, and fails with the job's reason. Each
replica runs TFX's own entry point with this step's artifacts and properties,

    python -m tfx.scripts.run_executor --executor_class_path ...trainer.executor.GenericExecutor
        --inputs JSON --outputs JSON --exec-properties JSON

as TFX's Vertex AI Trainer does (tfx/extensions/google_cloud_ai_platform). The operator sets
TF_CONFIG, so `model.train.run_fn` goes multi-worker; the chief writes the Model and ModelRun
artifacts, which therefore must be on storage every pod reaches (gs://, s3://).

    Trainer(run_fn=..., custom_config={"options": ..., TFJOB_KEY: {"image": IMAGE, "workers": 4,
            "gpus": 1, "cpu": "8", "memory": "32G"}}, ...)

The launcher pod's service account must be allowed to create TFJobs: deploy/tfjob-rbac.yaml.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
import uuid
from typing import Any

from absl import logging
from tfx import v1 as tfx
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils, name_utils, path_utils

from model import export

TFJOB_KEY = "tfjob"  # the Trainer's custom_config key holding TFJobSettings' fields
GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "tfjobs"
CONTAINER = "tensorflow"  # the container name the Training Operator looks for
PORT = 2222  # the operator's default TF port, named as it expects
ENTRY_POINT = ["python", "-m", "tfx.scripts.run_executor"]
REPLICA_EXECUTOR = name_utils.get_full_name(trainer_executor.GenericExecutor)
# What the Dockerfile's ENV sets, repeated so a replica never depends on the image's defaults.
IMAGE_ENV = {"TF_USE_LEGACY_KERAS": "1", "PYTHONPATH": "/pipeline"}
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
JOB_LABEL = "training.kubeflow.org/job-name"  # set by the operator on the replicas' pods


@dataclasses.dataclass(frozen=True)
class TFJobSettings:
    """custom_config[TFJOB_KEY]. workers: replicas in all, the chief included; gpus, cpu, memory:
    per replica ("" leaves it unset); namespace "": the launcher pod's own; service_account "":
    the namespace's default (it must reach the pipeline root's storage); tolerations (Kubernetes
    Toleration objects) and node_selector (node labels): where the replicas may run (GPU nodes)."""

    image: str
    workers: int = 2
    gpus: int = 0
    gpu_type: str = "nvidia.com/gpu"
    cpu: str = ""
    memory: str = ""
    namespace: str = ""
    service_account: str = ""
    tolerations: list[dict] = dataclasses.field(default_factory=list)
    node_selector: dict[str, str] = dataclasses.field(default_factory=dict)
    backoff_limit: int = 3  # restarts of failed replicas (they resume from BackupAndRestore)
    ttl_seconds: int = 86400  # the finished job and its pods (logs) are deleted after a day
    poll_seconds: float = 30.0

    def __post_init__(self):
        if not self.image:
            raise ValueError(f"custom_config[{TFJOB_KEY!r}] needs an image")
        if self.workers < 1 or self.gpus < 0:
            raise ValueError(f"workers must be >= 1 and gpus >= 0: {self}")

    @classmethod
    def from_custom_config(cls, custom_config: dict | str | None) -> TFJobSettings:
        if isinstance(custom_config, str):
            custom_config = json_utils.loads(custom_config)
        settings = (custom_config or {}).get(TFJOB_KEY)
        if not isinstance(settings, dict):
            raise ValueError(f"the Trainer's custom_config has no {TFJOB_KEY!r} dict")
        unknown = set(settings) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown custom_config[{TFJOB_KEY!r}] keys: {sorted(unknown)}")
        return cls(**settings)


def replica_command(input_dict, output_dict, exec_properties: dict[str, Any]) -> list[str]:
    """What every replica runs: TFX's Trainer executor on exactly this step's artifacts."""
    return [
        *ENTRY_POINT,
        "--executor_class_path",
        REPLICA_EXECUTOR,
        "--inputs",
        artifact_utils.jsonify_artifact_dict(input_dict),
        "--outputs",
        artifact_utils.jsonify_artifact_dict(output_dict),
        "--exec-properties",
        json.dumps(exec_properties, sort_keys=True),
    ]


def job_name(context: base_executor.BaseExecutor.Context | None, model_uri: str) -> str:
    """<pipeline>-trainer-<digest of run, execution, Model URI>-<random>: a DNS label short
    enough for the operator's `<name>-worker-<i>` pods and services."""
    info = getattr(context, "pipeline_info", None)
    prefix = re.sub(r"[^a-z0-9-]+", "-", (info.id if info else "").lower()).strip("-")[:20]
    prefix = f"{prefix}-trainer" if prefix and prefix[0].isalpha() else "trainer"
    # The execution's id has no public getter (the context keeps it for get_tmp_path).
    run = [getattr(context, "pipeline_run_id", None), getattr(context, "_unique_id", None)]
    digest = hashlib.sha256(json.dumps([*map(str, run), model_uri]).encode()).hexdigest()
    return f"{prefix}-{digest[:6]}-{uuid.uuid4().hex[:4]}"


def tfjob_manifest(
    name: str, namespace: str, settings: TFJobSettings, command: list[str], owner: dict | None
) -> dict:
    """The TFJob: Chief x1 + Worker x(workers-1), each the same container and resources."""
    resources: dict[str, dict] = {"requests": {}, "limits": {}}
    if settings.cpu:
        resources["requests"]["cpu"] = str(settings.cpu)
    if settings.memory:
        resources["requests"]["memory"] = resources["limits"]["memory"] = str(settings.memory)
    if settings.gpus:
        resources["limits"][settings.gpu_type] = settings.gpus
    container = {
        "name": CONTAINER,
        "image": settings.image,
        "command": command,  # the image's entry point is Beam's boot: replace it
        "env": [{"name": k, "value": v} for k, v in IMAGE_ENV.items()],
        "ports": [{"name": "tfjob-port", "containerPort": PORT}],
        "resources": {k: v for k, v in resources.items() if v},
    }
    pod_spec: dict[str, Any] = {"containers": [container]}
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    if settings.tolerations:
        pod_spec["tolerations"] = list(settings.tolerations)
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)

    def replicas(count: int) -> dict:
        return {
            "replicas": count,
            "restartPolicy": "OnFailure",
            # Istio's sidecar (Kubeflow profile namespaces) breaks the replicas' gRPC and keeps
            # finished pods running.
            "template": {
                "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": pod_spec,
            },
        }

    specs = {"Chief": replicas(1)}
    if settings.workers > 1:
        specs["Worker"] = replicas(settings.workers - 1)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": "tfx-trainer"},
    }
    if owner:  # deleting the pipeline run's pod deletes this job and its pods
        metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TFJob",
        "metadata": metadata,
        "spec": {
            "runPolicy": {
                "backoffLimit": settings.backoff_limit,
                # Pods still running when the job ends are deleted (no GPUs held by a hung
                # worker); finished pods stay until the TTL, so their logs can be read.
                "cleanPodPolicy": "Running",
                "ttlSecondsAfterFinished": settings.ttl_seconds,
            },
            "tfReplicaSpecs": specs,
        },
    }


def launcher_pod_owner() -> dict | None:
    """The KFP launcher's own pod (KFP 2.x sets KFP_POD_NAME/KFP_POD_UID), or None elsewhere."""
    name, uid = os.environ.get("KFP_POD_NAME"), os.environ.get("KFP_POD_UID")
    if not (name and uid):
        return None
    return {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}


def load_api_client(host: str | None = None):
    """An ApiClient: for `host` as given (tests), else in-cluster, else the local kubeconfig."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if host:
        configuration.host = host
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            # KUBECONFIG read now, not when `kubernetes` was imported.
            config.load_kube_config(
                config_file=os.environ.get("KUBECONFIG") or None,
                client_configuration=configuration,
            )
    return client.ApiClient(configuration)


def default_namespace() -> str:
    """The pod's own namespace in a cluster, else the kubeconfig context's, else "default"."""
    if os.path.exists(NAMESPACE_FILE):
        with open(NAMESPACE_FILE) as f:
            return f.read().strip()
    if os.environ.get("KFP_NAMESPACE"):
        return os.environ["KFP_NAMESPACE"]
    try:
        from kubernetes import config

        _, current = config.list_kube_config_contexts(os.environ.get("KUBECONFIG") or None)
        return current["context"].get("namespace") or "default"
    except Exception:  # no kubeconfig: the API server's default
        return "default"


def _state(job: dict) -> tuple[str, dict, dict]:
    """(latest condition type, that condition, replicaStatuses) of a TFJob."""
    status = job.get("status") or {}
    true = [c for c in status.get("conditions") or [] if c.get("status") == "True"]
    final = [c for c in true if c.get("type") in ("Succeeded", "Failed")]
    condition = (final or true or [{}])[-1]
    return condition.get("type", "Pending"), condition, status.get("replicaStatuses") or {}


def run_tfjob(api_client, manifest: dict, poll_seconds: float, retries: int = 5) -> dict:
    """Creates the TFJob and polls it until Succeeded (returned) or Failed (RuntimeError)."""
    from kubernetes import client
    from urllib3.exceptions import HTTPError

    api = client.CustomObjectsApi(api_client)
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    logging.info("TFJob %s created in namespace %s", name, namespace)
    seen, errors = None, 0
    while True:
        try:
            job = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            errors = 0
        except (client.ApiException, HTTPError) as error:
            # A busy or restarting API server: try again; a deleted job (404) is final.
            transient = getattr(error, "status", 503) in (429, 500, 502, 503, 504)
            errors += 1
            if not transient or errors > retries:
                raise
            logging.warning("reading TFJob %s failed (%s); retrying", name, error)
            time.sleep(poll_seconds)
            continue
        state, condition, replicas = _state(job)
        if (state, replicas) != seen:
            seen = (state, replicas)
            logging.info("TFJob %s: %s %s", name, state, json.dumps(replicas, sort_keys=True))
        if state == "Succeeded":
            return job
        if state == "Failed":
            raise RuntimeError(
                f"TFJob {name} in namespace {namespace} failed: "
                f"{condition.get('reason', '?')}: {condition.get('message', '')}. Replica logs: "
                f"kubectl logs -n {namespace} -l {JOB_LABEL}={name} --all-containers --prefix "
                f"(or kubectl logs -n {namespace} {name}-chief-0)"
            )
        time.sleep(poll_seconds)


class TFJobExecutor(base_executor.BaseExecutor):
    """Runs the Trainer's GenericExecutor as a TFJob and waits for it (see the module doc)."""

    def __init__(self, context=None, api_client=None):
        super().__init__(context)
        self._api_client = api_client  # tests: a client for a stand-in API server

    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802 (TFX's name)
        self._log_startup(input_dict, output_dict, exec_properties)
        settings = TFJobSettings.from_custom_config(
            exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
        )
        model_uri = artifact_utils.get_single_uri(output_dict[standard_component_specs.MODEL_KEY])
        namespace = settings.namespace or default_namespace()
        manifest = tfjob_manifest(
            job_name(self._context, model_uri),
            namespace,
            settings,
            replica_command(input_dict, output_dict, exec_properties),
            launcher_pod_owner(),
        )
        # TFX's GenericExecutor fails any replica that finds no serving model directory after
        # run_fn, but only the chief exports there: a worker finishing first would fail the job.
        # Made here, empty; the check that counts is below, on the chief's saved_model.pb.
        serving_dir = path_utils.serving_model_dir(model_uri)
        fileio.makedirs(serving_dir)
        run_tfjob(self._api_client or load_api_client(), manifest, settings.poll_seconds)
        saved_model = os.path.join(serving_dir, export.SAVED_MODEL)
        if not export.holds_saved_model(serving_dir):
            raise RuntimeError(
                f"TFJob {manifest['metadata']['name']} succeeded but {saved_model} is missing: "
                "the replicas must write to storage this pod reads (a gs:// or s3:// pipeline "
                "root, not a pod-local path)"
            )
        logging.info("the TFJob's chief exported %s", saved_model)


class Trainer(tfx.components.Trainer):
    """tfx.components.Trainer whose training runs as a Kubeflow TFJob (custom_config[TFJOB_KEY])."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(TFJobExecutor)


__all__ = ["TFJOB_KEY", "TFJobExecutor", "TFJobSettings", "Trainer", "tfjob_manifest"]
