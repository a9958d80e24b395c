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

The replicas run as the service account the pipeline's steps run as, unless the settings name
one: it is what holds the bucket identity (Workload Identity, IRSA, a mounted secret) the steps
use, while the namespace's `default` usually holds none. Which one that is is only known at run
time (KFP runs steps as `pipeline-runner` single-user, `default-editor` in a multi-user profile,
or as the run's own service account), and KFP hands a step's pod no downward-API variable for it
(only KFP_POD_NAME, KFP_POD_UID), so the launcher reads it from its own service account token,
whose `sub` claim is `system:serviceaccount:<namespace>:<name>` (bound and legacy tokens alike),
which needs no Kubernetes right beyond the token the launcher already uses.

A deadline bounds the step: runPolicy.activeDeadlineSeconds, which the Training Operator (v1 API,
kubeflow/training-operator 1.5 to 1.9: pkg/controller.v1/common/job.go, pkg/core/job.go) counts
from the job's first reconcile, Pending time included, then fails the job ("Job <name> has failed
because it was active longer than specified deadline") and deletes its running and pending pods;
and the launcher's own wait, which gives the operator two polls more, then deletes the job itself
(pending replicas would otherwise start later and train for no one) and fails naming the
replicas' states: Pending with the scheduler's reason from the pod's PodScheduled condition, a
waiting container's reason (ImagePullBackOff, CrashLoopBackOff), Running, Failed with exit code.

The launcher pod's service account must be allowed to create TFJobs and list their pods:
deploy/tfjob-rbac.yaml.
"""

from __future__ import annotations

import base64
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
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # the pod's own token
JOB_LABEL = "training.kubeflow.org/job-name"  # set by the operator on the replicas' pods


@dataclasses.dataclass(frozen=True)
class TFJobSettings:
    """custom_config[TFJOB_KEY]. workers: replicas in all, the chief included; gpus, cpu, memory:
    per replica ("" leaves it unset); namespace "": the launcher pod's own; service_account "":
    the launcher pod's own, read at run time (it must reach the pipeline root's storage);
    tolerations (Kubernetes Toleration objects) and node_selector (node labels): where the
    replicas may run (GPU nodes); deadline_seconds: from creation to success, Pending included."""

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
    deadline_seconds: int = 24 * 3600
    poll_seconds: float = 30.0

    def __post_init__(self):
        if not self.image:
            raise ValueError(f"custom_config[{TFJOB_KEY!r}] needs an image")
        if self.workers < 1 or self.gpus < 0:
            raise ValueError(f"workers must be >= 1 and gpus >= 0: {self}")
        if self.deadline_seconds < 1:
            raise ValueError(f"deadline_seconds must be a positive number of seconds: {self}")

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
                # The operator fails the job and deletes its pods then, even if this pod is gone.
                "activeDeadlineSeconds": settings.deadline_seconds,
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
    namespace_file = os.path.join(SERVICE_ACCOUNT_DIR, "namespace")
    if os.path.exists(namespace_file):
        with open(namespace_file) as f:
            return f.read().strip()
    if os.environ.get("KFP_NAMESPACE"):
        return os.environ["KFP_NAMESPACE"]
    try:
        from kubernetes import config

        _, current = config.list_kube_config_contexts(os.environ.get("KUBECONFIG") or None)
        return current["context"].get("namespace") or "default"
    except Exception:  # no kubeconfig: the API server's default
        return "default"


def own_service_account() -> tuple[str, str] | None:
    """(namespace, name) of this pod's service account, from its token's `sub` claim
    (system:serviceaccount:NAMESPACE:NAME); None outside a pod or for a token without one."""
    token_file = os.path.join(SERVICE_ACCOUNT_DIR, "token")
    try:
        with open(token_file) as f:
            payload = f.read().strip().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (OSError, IndexError, ValueError):
        return None
    kind, _, rest = str(claims.get("sub", "")).partition(":serviceaccount:")
    namespace, _, name = rest.partition(":")
    return (namespace, name) if kind == "system" and namespace and name else None


def replica_service_account(settings: TFJobSettings, namespace: str) -> str:
    """The settings' service account, else the launcher pod's own when the job runs in its
    namespace, else "" (the namespace's default)."""
    if settings.service_account:
        return settings.service_account
    own = own_service_account()
    if own and own[0] == namespace:
        return own[1]
    logging.warning(
        "the TFJob's replicas run as namespace %s's default service account: %s",
        namespace,
        f"this pod's ({own[1]}) lives in namespace {own[0]}" if own else "not in a pod",
    )
    return ""


def _reason(status: dict) -> str:
    """Why a pod is where it is: the scheduler's reason, a container's, an exit code."""
    for condition in status.get("conditions") or []:
        if (condition.get("type"), condition.get("status")) == ("PodScheduled", "False"):
            return ": ".join(filter(None, [condition.get("reason"), condition.get("message")]))
    for container in status.get("containerStatuses") or []:
        state, last = container.get("state") or {}, container.get("lastState") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting:
            text = ": ".join(filter(None, [waiting.get("reason"), waiting.get("message")]))
            if last.get("terminated"):
                ended = last["terminated"]
                text += (
                    f"; last ended {ended.get('reason', '')} (exit code {ended.get('exitCode')})"
                )
            return text
        if terminated and terminated.get("exitCode"):
            return f"{terminated.get('reason', '')} (exit code {terminated['exitCode']})".strip()
        if container.get("restartCount"):
            return f"restarted {container['restartCount']} times"
    return ""


def replica_states(pods: list[dict], job: str) -> list[str]:
    """One line per replica pod: "chief-0 Pending (Unschedulable: 0/4 nodes are available: 4
    Insufficient nvidia.com/gpu.)", "worker-0 Running", "worker-1 Failed (Error (exit code 1))"."""
    states = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        status = pod.get("status") or {}
        reason = _reason(status)[:300]
        name = pod["metadata"]["name"].removeprefix(f"{job}-")
        states.append(
            f"{name} {status.get('phase', 'Unknown')}" + (f" ({reason})" if reason else "")
        )
    return states


def _replicas(core_api, namespace: str, name: str, counts: dict) -> list[str]:
    """The replicas' states from their pods, else the job's replica counts and why."""
    from kubernetes import client
    from urllib3.exceptions import HTTPError

    try:
        response = core_api.list_namespaced_pod(
            namespace, label_selector=f"{JOB_LABEL}={name}", _preload_content=False
        )
        pods = json.loads(response.data).get("items") or []
        return replica_states(pods, name) if pods else []
    except (client.ApiException, HTTPError) as error:
        why = f"{getattr(error, 'status', '')} {getattr(error, 'reason', error)}".strip()
        return [
            f"replica counts {json.dumps(counts, sort_keys=True)} (its pods are unreadable: {why}; "
            "deploy/tfjob-rbac.yaml lets this pod list them)"
        ]


def _state(job: dict) -> tuple[str, dict, dict]:
    """(latest condition type, that condition, replicaStatuses) of a TFJob."""
    status = job.get("status") or {}
    true = [c for c in status.get("conditions") or [] if c.get("status") == "True"]
    final = [c for c in true if c.get("type") in ("Succeeded", "Failed")]
    condition = (final or true or [{}])[-1]
    return condition.get("type", "Pending"), condition, status.get("replicaStatuses") or {}


def run_tfjob(api_client, manifest: dict, poll_seconds: float, retries: int = 5) -> dict:
    """Creates the TFJob and polls it until Succeeded (returned), Failed or past its deadline
    (runPolicy.activeDeadlineSeconds, plus two polls for the operator's own): RuntimeError naming
    the replicas' states. A job past its deadline is deleted."""
    from kubernetes import client
    from urllib3.exceptions import HTTPError

    api, core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    deadline_seconds = manifest["spec"]["runPolicy"].get("activeDeadlineSeconds")
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    logging.info("TFJob %s created in namespace %s", name, namespace)
    # Counted from now, after the operator's start: its own deadline always fails the job first.
    give_up = time.monotonic() + deadline_seconds + 2 * poll_seconds if deadline_seconds else None
    logs = (
        f"Replica logs: kubectl logs -n {namespace} -l {JOB_LABEL}={name} --all-containers "
        f"--prefix (or kubectl logs -n {namespace} {name}-chief-0)"
    )
    seen, last_states, errors = None, [], 0
    while True:
        late = give_up is not None and time.monotonic() > give_up  # before reading the job
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
        state, condition, counts = _state(job)
        states = _replicas(core, namespace, name, counts)
        last_states = states or last_states  # the operator deletes pods when the job fails
        if (state, states) != seen:
            seen = (state, states)
            logging.info("TFJob %s: %s %s", name, state, "; ".join(states) or "(no pods yet)")
        replicas = "; ".join(last_states) or "none created"
        if state == "Succeeded":
            return job
        if state == "Failed":
            raise RuntimeError(
                f"TFJob {name} in namespace {namespace} failed: "
                f"{condition.get('reason', '?')}: {condition.get('message', '')}. Replicas when "
                f"last seen: {replicas}. {logs}"
            )
        if late:
            raise RuntimeError(
                f"TFJob {name} in namespace {namespace} did not succeed within its deadline, "
                f"{deadline_seconds} s ({deadline_seconds / 3600:.3g} h; kubeflow_runner.py "
                f"--tfjob-deadline-hours) after its creation. Job: {state}; replicas: {replicas}. "
                f"{_delete(api, namespace, name)} Why pods wait: kubectl describe pods -n "
                f"{namespace} -l {JOB_LABEL}={name}. {logs}"
            )
        time.sleep(poll_seconds)


def _delete(api, namespace: str, name: str) -> str:
    """Deletes the job and, through their owner references, its pods; says what happened."""
    from kubernetes import client
    from urllib3.exceptions import HTTPError

    options = client.V1DeleteOptions(propagation_policy="Background")
    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body=options)
        return "Deleted the job and its pods."
    except (client.ApiException, HTTPError) as error:
        reason = getattr(error, "reason", error)
        return f"Could not delete it ({reason}): kubectl delete tfjob -n {namespace} {name}."


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
        account = replica_service_account(settings, namespace)
        settings = dataclasses.replace(settings, service_account=account)
        logging.info("the TFJob's replicas run as service account %s", account or "default")
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
