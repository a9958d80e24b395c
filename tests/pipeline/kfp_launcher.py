"""Runs a compiled KFP v2 pipeline spec here, the way Kubeflow Pipelines' backend would.

No cluster is reachable from the tests, so this plays KFP 2.x's driver and launcher for the parts
a TFX spec uses, as read in kubeflow/pipelines (backend/src/v2: driver/driver.go,
component/launcher_v2.go, objectstore/object_store.go, metadata/converter.go) at the tags
2.0.0, 2.4.0, 2.5.0, 2.14.0, 2.15.0, 2.16.0, 2.16.1 and 2.17.0 (`kfp_version` picks the release
played; the newest by default): the root DAG's tasks in dependency order, one local process
per container task (the spec's own command and args, `python` being this interpreter and the
repository root the image's WORKDIR), ExecutorInput built as the driver builds it, what is
refused refused with the backend's words.

Warm starts: a `python -m <module>` step is forked from a zygote (tests/pipeline/zygote.py), a
process that imported <module> once with the image's environment (and, on first use, the module
of the step's --executor_class_path), because the image's steps spend 6-9 s each importing
TensorFlow, TFX, TFMA and Beam before they start (most of a tiny run's time). Each step is
still its own process with exactly its pod's environment, cwd, argv, output and exit status;
what a fork does not reproduce (import-time output printed once, in the zygote's log; the hash
seed and open descriptors shared) is listed there. Zygotes are keyed by the module and the
environment read at import, live as long as this process (close_zygotes ends them), and
`fresh_processes=True` (or KFP_LAUNCHER_FRESH_PROCESSES=1) runs every step as a fresh subprocess.
Other commands always run as subprocesses.

Each task runs in a pod of its own, played by a fresh folder (`pod`) standing for its disk: the
launcher's local mirror `/gcs|/minio|/s3/<bucket>/<key>` and `/tmp` lie under it, and the step
finds it in KFP_LAUNCHER_MIRROR_ROOT (pipeline/kfp_entrypoint.py's test seam; "/" in a real pod).
A volume the kfp-kubernetes platform spec (the YAML's second document) mounts at or above a
mirror folder puts that folder on a per-task volume folder (`TaskResult.volumes`).

With an s3:// or minio:// root the artifacts live in `store`, a real S3-protocol server reached
over HTTP with boto3 (ObjectStore), and the launcher does what launcher_v2.go does:
- before the command, downloads every input artifact to the pod's mirror (up to 2.16 by bare
  key prefix, so `.../model` also pulls `.../model_run`; 2.17 only keys under `<key>/`), and
  creates only the parent folder of each output's mirror path;
- tees the command's output into `executor-logs`' mirror file (2.5+, the API server's
  PUBLISH_LOGS=true of the stock manifests: the driver adds that `system.Artifact` output to
  every task; from 2.16.1 its URI ends in "-<retry index>");
- after the command, merges the ExecutorOutput's URI and metadata into each output (2.17 not
  for executor-logs), uploads each output's mirror path (a missing one is only a warning) and
  records the artifact as ML Metadata stores it: booleans become 0/1, lists and structs come
  back wrapped as {"list": ...} / {"struct": ...}, a null value fails the step, `display_name`
  defaults to the output key (and from 2.4 `store_session_info` is added).
Output URIs are `<root>/<pipeline>/<run>/<task>/<key>`, from 2.4 `<root>/<pipeline>/<run>/
<task>/<uuid>/<key>`; the ExecutorOutput file is /tmp/kfp_outputs/output_metadata.json, from 2.15
`output_metadata.json` in the task root's mirror, where output artifacts are also named by key.

A root without a scheme (a local folder) stands for a bucket TensorFlow reads itself (gs://):
steps read and write it directly; nothing is downloaded or uploaded.

`backend` picks who is played:
- "kfp" (default), open-source Kubeflow Pipelines 2.x: only `runtimeValue.constant` parameters,
  `lifecycle.preCacheCheck` is never run (the backend does not read it), and an upstream
  artifact reaches its consumer with `type: {instanceSchema: ""}` (the backend does not keep
  artifact schemas: metadata/client.go GetOutputArtifactsByExecutionId, "TODO: figure out how
  to get schema").
- "vertex", what TFX's container entrypoint was written for (Vertex AI Pipelines): the
  preCacheCheck driver runs first and writes the output file the executor then reads,
  deprecated `constantValue` parameters arrive as `inputs.parameters`, and input artifacts carry
  their declared types; local roots only, no launcher mirror.

Caching, as the driver does it (backend/src/v2/driver/driver.go getFingerPrint and
getFingerPrintsAndID, from 2.14 driver/cache.go and container.go; cacheutils/cache.go
GenerateCacheKey and GenerateFingerPrint; component/launcher_v2.go for the entry written after a
success): a task whose `cachingOptions.enableCache` is true (and caching is not off server-wide)
gets a fingerprint, the sha256 of the JSON of a CacheKey: its input artifacts' names (ML
Metadata ids), its input parameter *values* as resolved (upstream outputs, and from 2.5 the
driver's placeholders such as {{$.pipeline_job_uuid}}), its output artifacts without URIs, its
output parameters' types, and the container's image and unsubstituted command and args. The
newest earlier task of the same pipeline name and namespace with that fingerprint that
succeeded is reused: no pod runs, and the cached execution's output artifacts (the same ML
Metadata artifacts, so the same ids downstream) and output parameters are handed on. Runs share
ML Metadata and the cache through a `Cluster`, which run_pipeline_spec takes.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format, struct_pb2
from kfp.pipeline_spec import pipeline_spec_pb2 as pb

from model import keras_env
from tests.pipeline import zygote

REPO_ROOT = Path(__file__).resolve().parents[2]
# The image's environment (Dockerfile ENV) beyond the interpreter.
IMAGE_ENV = {"PYTHONPATH": str(REPO_ROOT), **keras_env.ENV, "TF_CPP_MIN_LOG_LEVEL": "2"}
SCHEMA_VERSIONS = ("2.0.0", "2.1.0")  # what KFP 2.x's backend reads
BACKENDS = ("kfp", "vertex")
NEWEST = "2.17.0"
MIRRORS = {"gs://": "gcs", "minio://": "minio", "s3://": "s3"}  # launcher_v2.go LocalPathForURI
EXECUTOR_LOGS = "executor-logs"
MIRROR_ROOT_ENV = "KFP_LAUNCHER_MIRROR_ROOT"  # pipeline/kfp_entrypoint.py's seam
_PLACEHOLDER = re.compile(r"\{\{\$[^}]*\}\}")
_MOUNT_KINDS = ("pvcMount", "genericEphemeralVolume", "emptyDirMounts")  # kfp-kubernetes
FRESH_PROCESSES_ENV = "KFP_LAUNCHER_FRESH_PROCESSES"  # "1": no zygotes (run_pipeline_spec)
_zygotes: dict[tuple, zygote.Zygote] = {}


class SpecRefused(ValueError):
    """The spec uses something the played backend cannot run."""


class TaskFailed(RuntimeError):
    """A task's command exited non-zero, or the launcher failed around it."""


@dataclasses.dataclass(frozen=True)
class Release:
    """What differs between the Kubeflow Pipelines releases played (checked at the tags)."""

    version: str = NEWEST
    publish_logs: bool = True  # the API server's PUBLISH_LOGS (stock manifests: true)

    @property
    def _v(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version.split("."))

    @property
    def executor_logs(self) -> bool:  # driver.go provisionOutputs, 2.5.0+
        return self.publish_logs and self._v >= (2, 5)

    @property
    def logs_retry_suffix(self) -> bool:  # launcher_v2.go qualifyExecutorLogsForRetry, 2.16.1+
        return self._v >= (2, 16, 1)

    @property
    def uri_salt(self) -> bool:  # driver.go provisionOutputs(..., uuid.NewString()), 2.4.0+
        return self._v >= (2, 4)

    @property
    def task_root_outputs(self) -> bool:  # outputFile in the task root, outputs named: 2.15+
        return self._v >= (2, 15)

    @property
    def exact_prefix(self) -> bool:  # object_store.go isBlobKeyUnderPrefix, 2.17.0+
        return self._v >= (2, 17)

    @property
    def session_info(self) -> bool:  # metadata/client.go RecordArtifact store_session_info
        return self._v >= (2, 4)

    @property
    def run_placeholders(self) -> bool:  # driver resolveInputs: {{$.pipeline_job_uuid}}..., 2.5+
        return self._v >= (2, 5)


@dataclasses.dataclass
class Cluster:
    """What a Kubeflow Pipelines deployment keeps across runs: ML Metadata's ids (input artifacts
    are named by them) and executions' outputs, and the API server's table of cached tasks
    (fingerprint, pipeline, namespace -> ML Metadata execution id). cache_disabled: caching off
    server-wide (the driver's and launcher's --cache_disabled)."""

    namespace: str = "kubeflow"
    cache_disabled: bool = False
    artifact_ids: int = 0
    execution_ids: int = 0
    executions: dict[int, TaskResult] = dataclasses.field(default_factory=dict)
    cache: list[tuple[str, str, str, int]] = dataclasses.field(default_factory=list)

    def lookup(self, fingerprint: str, pipeline: str) -> TaskResult | None:
        """cacheutils GetExecutionCache: the newest task with the fingerprint (created_at desc)."""
        for entry in reversed(self.cache):
            if entry[:3] == (fingerprint, f"pipeline/{pipeline}", self.namespace):
                return self.executions[entry[3]]
        return None


def cache_key(
    inputs: pb.ExecutorInput.Inputs,
    outputs: pb.ExecutorInput.Outputs,
    component: pb.ComponentSpec,
    container: pb.PipelineDeploymentConfig.PipelineContainerSpec,
) -> dict:
    """cacheutils/cache.go GenerateCacheKey, as protojson writes the CacheKey (empty fields
    left out; pvcNames, from 2.14, are the task's pvc_mount claims: none in these specs)."""
    key: dict[str, Any] = {}
    names = {
        k: {"artifactNames": [a.name for a in v.artifacts]} for k, v in inputs.artifacts.items()
    }
    values = {k: json_format.MessageToDict(v) for k, v in inputs.parameter_values.items()}
    specs = {}
    for k, listed in outputs.artifacts.items():
        if listed.artifacts:  # only the first: "TODO: Support multiple artifacts someday"
            first = listed.artifacts[0]
            wiped = pb.RuntimeArtifact(name=first.name, type=first.type, metadata=first.metadata)
            specs[k] = json_format.MessageToDict(wiped)
    types = {
        k: pb.ParameterType.ParameterTypeEnum.Name(
            component.output_definitions.parameters[k].parameter_type
        )
        for k in outputs.parameters
    }
    for field, value in (
        ("inputArtifactNames", names),
        ("inputParameterValues", values),
        ("outputArtifactsSpec", specs),
        ("outputParametersSpec", types),
    ):
        if value:
            key[field] = value
    key["containerSpec"] = {
        "image": container.image,
        "cmdArgs": [*container.command, *container.args],
    }
    return key


def fingerprint(key: dict) -> str:
    """cacheutils GenerateFingerPrint: sha256 of the key as Go's encoding/json re-marshals it
    (map keys sorted, compact, <, > and & escaped, float64 numbers without a needless .0)."""

    def go(value):
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
            return int(value)
        if isinstance(value, dict):
            return {k: go(v) for k, v in value.items()}
        if isinstance(value, list):
            return [go(v) for v in value]
        return value

    text = json.dumps(go(key), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return hashlib.sha256(text.encode()).hexdigest()


class ObjectStore:
    """An S3-protocol server (AWS S3, MinIO, moto on loopback) as the launcher reaches it: one
    boto3 client for s3:// and minio:// URIs (KFP's MinIO speaks S3)."""

    def __init__(self, endpoint_url: str, access_key: str, secret_key: str, region="us-east-1"):
        import boto3

        self.endpoint_url = endpoint_url
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region,
        )

    @staticmethod
    def split(uri: str) -> tuple[str, str]:
        bucket, _, key = uri.split("://", 1)[1].partition("/")
        return bucket, key

    def keys(self, uri: str) -> list[str]:
        bucket, prefix = self.split(uri)
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def download(self, uri: str, local: Path, exact_prefix: bool) -> list[str]:
        """object_store.go DownloadBlob: every key listed under the prefix, to
        local/<relative path> (a sibling like model_run lands beside `local` up to 2.16)."""
        bucket, prefix = self.split(uri)
        got = []
        for key in self.keys(uri):
            if exact_prefix and not (key == prefix.rstrip("/") or key.startswith(prefix + "/")):
                continue
            target = Path(os.path.normpath(local / os.path.relpath(key, prefix)))
            target.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(bucket, key, str(target))
            got.append(key)
        return got

    def upload(self, local: Path, uri: str) -> list[str]:
        """object_store.go UploadBlob: a file to the key, a folder's files below it."""
        bucket, key = self.split(uri)
        files = [(local, key)] if local.is_file() else []
        if local.is_dir():
            files = [
                (f, f"{key}/{f.relative_to(local).as_posix()}")
                for f in sorted(local.rglob("*"))
                if f.is_file()
            ]
        for path, name in files:
            self.client.upload_file(str(path), bucket, name)
        return [name for _, name in files]


@dataclasses.dataclass
class TaskResult:
    name: str
    executor_input: dict | None  # as the command received it (None for importers)
    executor_output: dict  # the ExecutorOutput file the command wrote ({} when none)
    artifacts: dict[str, dict]  # output key -> RuntimeArtifact as recorded (name, uri, metadata)
    parameters: dict[str, Any]  # output parameter values
    log: Path | None
    pod: Path | None = None  # the folder standing for the pod's disk
    downloaded: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # input -> keys
    uploaded: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # output -> keys
    volumes: dict[str, Path] = dataclasses.field(default_factory=dict)  # mount path -> folder
    fingerprint: str = ""  # the cache key's, when the task's caching option is on
    cached: bool = False  # reused from the cache: no pod ran
    execution_id: int = 0  # ML Metadata's


def load_spec(spec: str | os.PathLike | dict) -> tuple[pb.PipelineSpec, dict]:
    """(PipelineSpec, runtimeConfig) from a PipelineJob JSON, a PipelineSpec YAML (its first
    document: a second one is the platform spec, load_platform_spec), or a dict."""
    spec = _documents(spec)[0]
    runtime_config = spec.get("runtimeConfig", {}) if "pipelineSpec" in spec else {}
    spec = spec.get("pipelineSpec", spec)
    return json_format.ParseDict(spec, pb.PipelineSpec()), runtime_config


def load_platform_spec(spec: str | os.PathLike | dict) -> dict:
    """executor label -> its kfp-kubernetes config (volumes, tolerations, ...), from the
    document `platforms: kubernetes: deploymentSpec: executors:` ({} when there is none)."""
    for document in _documents(spec)[1:]:
        kubernetes = (document or {}).get("platforms", {}).get("kubernetes", {})
        if kubernetes:
            return kubernetes.get("deploymentSpec", {}).get("executors", {})
    return {}


def _documents(spec) -> list[dict]:
    if isinstance(spec, dict):
        return [spec]
    text = Path(spec).read_text()
    if str(spec).endswith(".json"):
        return [json.loads(text)]
    return [d for d in yaml.safe_load_all(text) if d is not None]


def run_pipeline_spec(
    spec: str | os.PathLike | dict,
    pipeline_root: str | os.PathLike | None = None,
    run_id: str = "run-1",
    backend: str = "kfp",
    echo=None,
    *,
    kfp_version: str = NEWEST,
    publish_logs: bool = True,
    store: ObjectStore | None = None,
    workdir: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    secrets: dict[str, dict[str, str]] | None = None,
    cluster: Cluster | None = None,
    fresh_processes: bool | None = None,
) -> dict[str, TaskResult]:
    """Runs every task of the spec's root DAG; returns task name -> TaskResult.

    pipeline_root: where artifacts go (default: the job's gcsOutputDirectory or the spec's
    defaultPipelineRoot): a local folder, or s3://|minio://<bucket>/... on `store`.
    workdir: where the pods' disks are played (default: <local root>/.pods).
    env: the steps' environment beyond the image's. A pod inherits nothing else of this process's
    AWS_* settings: S3 credentials reach a step only through `env` or the platform spec's
    secret_as_env from `secrets` (the namespace's Kubernetes secrets: name -> {key: value}).
    echo: a text stream that also receives each task's log lines (default: log files only).
    cluster: ML Metadata and the cache shared with earlier runs (default: a fresh deployment).
    fresh_processes: every step a fresh subprocess, no zygote (default: FRESH_PROCESSES_ENV).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    platform = load_platform_spec(spec)
    spec, runtime_config = load_spec(spec)
    if spec.schema_version not in SCHEMA_VERSIONS:
        raise SpecRefused(f"schemaVersion {spec.schema_version!r} is not one of {SCHEMA_VERSIONS}")
    if spec.root.input_definitions.parameters or spec.root.input_definitions.artifacts:
        raise SpecRefused("pipeline-level inputs (runtime parameters) are not supported here")
    root = pipeline_root or runtime_config.get("gcsOutputDirectory") or spec.default_pipeline_root
    if not root:
        raise SpecRefused("no pipeline root: pass one, or compile a job with gcsOutputDirectory")
    root = str(root)
    remote = any(root.startswith(s) for s in MIRRORS)
    if remote and (store is None or root.startswith("gs://") or backend == "vertex"):
        raise ValueError(f"{root}: a remote root needs `store` (an S3-protocol server), kfp only")
    if workdir is None:
        if remote:
            raise ValueError("a remote root needs a workdir for the pods' disks")
        workdir = Path(root) / ".pods"
    run_root = f"{root.rstrip('/')}/{spec.pipeline_info.name}/{run_id}"
    deployment = json_format.ParseDict(
        json_format.MessageToDict(spec.deployment_spec), pb.PipelineDeploymentConfig()
    )
    release = Release(kfp_version, publish_logs)
    run = _Run(spec, deployment, platform, run_root, backend, echo, release, store, Path(workdir))
    run.env, run.secrets = env or {}, secrets or {}
    run.cluster, run.run_id = cluster or Cluster(), run_id
    if fresh_processes is None:
        fresh_processes = os.environ.get(FRESH_PROCESSES_ENV) == "1"
    run.warm = not fresh_processes
    order = task_order(spec)
    for name in order:  # KFP's compiler refuses these before the run starts: nothing runs
        run.executor(name)
    for name in order:
        run.results[name] = run.task(name)
    return run.results


def task_order(spec: pb.PipelineSpec) -> list[str]:
    """The root DAG's task names, every task after its dependencies (ties by name)."""
    tasks = spec.root.dag.tasks
    needs = {name: set(task.dependent_tasks) | _producers(task) for name, task in tasks.items()}
    for name, deps in needs.items():
        if unknown := deps - set(tasks):  # the driver's words (resolve.go)
            raise SpecRefused(f"task {name}: producer task, {sorted(unknown)[0]}, not in tasks")
    order, done = [], set()
    while len(order) < len(tasks):
        ready = sorted(n for n in tasks if n not in done and needs[n] <= done)
        if not ready:
            raise SpecRefused(f"dependency cycle among {sorted(set(tasks) - done)}")
        order.append(ready[0])
        done.add(ready[0])
    return order


def _producers(task: pb.PipelineTaskSpec) -> set[str]:
    artifacts = [a.task_output_artifact.producer_task for a in task.inputs.artifacts.values()]
    params = [p.task_output_parameter.producer_task for p in task.inputs.parameters.values()]
    return {p for p in artifacts + params if p}


def mirror_path(uri: str) -> str | None:
    """launcher_v2.go LocalPathForURI: the pod-absolute mirror path, None for other schemes."""
    for scheme, folder in MIRRORS.items():
        if uri.startswith(scheme):
            return f"/{folder}/{uri[len(scheme):]}"
    return None


def mlmd_metadata(task: str, metadata: dict) -> dict:
    """metadata/converter.go toMLMDArtifact, then toRuntimeArtifact: the metadata as the next
    task receives it from ML Metadata."""

    def convert(key, value):
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, str | int | float):
            return value
        if isinstance(value, list):
            return {"list": value}
        if isinstance(value, dict):
            return {"struct": value}
        raise TaskFailed(
            f"task {task}: unable to produce MLMD artifact: metadata {key!r}: "
            f"unknown/unsupported value type {type(value).__name__}"
        )

    return {k: convert(k, v) for k, v in metadata.items()}


class _Run:
    def __init__(self, spec, deployment, platform, run_root, backend, echo, release, store, work):
        self.spec, self.deployment, self.platform = spec, deployment, platform
        self.run_root, self.backend, self.echo = run_root, backend, echo
        self.release, self.store, self.workdir = release, store, work
        self.remote = store is not None
        self.env: dict[str, str] = {}
        self.results: dict[str, TaskResult] = {}
        self.cluster = Cluster()  # ML Metadata's ids (inputs are named by them), the cache
        self.run_id = ""
        self.warm = True  # python -m steps forked from a zygote

    def executor(self, name: str) -> pb.PipelineDeploymentConfig.ExecutorSpec:
        task = self.spec.root.dag.tasks[name]
        _refuse_control_flow(name, task)
        component = self.spec.components[task.component_ref.name]
        if component.WhichOneof("implementation") != "executor_label":
            raise SpecRefused(f"task {name}: only executor components run here (no sub-DAGs)")
        executor = self.deployment.executors[component.executor_label]
        kind = executor.WhichOneof("spec")
        if kind == "resolver":  # KFP's words (backend/src/v2/compiler/argocompiler/dag.go)
            raise SpecRefused(f"task {name}: resolver executors not implemented")
        if kind not in ("container", "importer"):
            raise SpecRefused(f"task {name}: {kind} executors are not run by KFP's backend")
        return executor

    def task(self, name: str) -> TaskResult:
        task = self.spec.root.dag.tasks[name]
        component = self.spec.components[task.component_ref.name]
        executor = self.executor(name)
        if executor.HasField("importer"):
            result = self._import(name, component, executor.importer)
        else:
            result = self._container(name, task, component, executor.container)
        self.cluster.execution_ids += 1
        result.execution_id = self.cluster.execution_ids
        self.cluster.executions[result.execution_id] = result
        if result.fingerprint and not result.cached:  # launcher_v2.go: after a success only
            entry = (result.fingerprint, f"pipeline/{self.spec.pipeline_info.name}")
            self.cluster.cache.append((*entry, self.cluster.namespace, result.execution_id))
        return result

    def _cached(self, name, task, component, container, executor_input) -> TaskResult:
        """The driver's cache lookup: a TaskResult handing on an earlier execution's outputs,
        or one with only the fingerprint (run the task), or None (caching off for it)."""
        if self.cluster.cache_disabled or not task.caching_options.enable_cache:
            return None
        key = cache_key(executor_input.inputs, executor_input.outputs, component, container)
        found = self.cluster.lookup(fingerprint(key), self.spec.pipeline_info.name)
        result = TaskResult(name, None, {}, {}, {}, None, fingerprint=fingerprint(key))
        if found is None:
            return result
        # driver cache.go reuseCachedOutputs: every output the driver provisioned must be among
        # the cached execution's (collectOutputArtifactMetadataFromCache).
        for key_name in executor_input.outputs.artifacts:
            if key_name not in found.artifacts:
                raise TaskFailed(
                    f"task {name}: unable to find artifact with name {key_name} in mlmd output "
                    "artifacts"
                )
        result.artifacts = {k: found.artifacts[k] for k in executor_input.outputs.artifacts}
        result.parameters = dict(found.parameters)
        result.cached = True
        return result

    # ------------------------------------------------------------------ inputs and outputs

    def _inputs(self, name, task, component) -> pb.ExecutorInput.Inputs:
        inputs = pb.ExecutorInput.Inputs()
        for key, param in task.inputs.parameters.items():
            kind = param.WhichOneof("kind")
            if kind == "runtime_value" and param.runtime_value.HasField("constant"):
                _refuse_checkout_path(name, key, param.runtime_value.constant)
                inputs.parameter_values[key].CopyFrom(param.runtime_value.constant)
                if self.release.run_placeholders and self.backend == "kfp":
                    text = param.runtime_value.constant.string_value
                    run = {"{{$.pipeline_job_uuid}}": self.run_id, "{{$.pipeline_task_name}}": name}
                    if text in run:  # the whole value, as the driver compares it
                        inputs.parameter_values[key].string_value = run[text]
            elif kind == "runtime_value" and self.backend == "vertex":
                inputs.parameters[key].CopyFrom(param.runtime_value.constant_value)
            elif kind == "task_output_parameter":
                source = param.task_output_parameter
                value = self.results[source.producer_task].parameters[source.output_parameter_key]
                json_format.ParseDict(value, inputs.parameter_values[key])
            else:  # KFP's driver: "param runtime value spec of type ... not implemented"
                what = param.runtime_value.WhichOneof("value") if kind == "runtime_value" else kind
                raise SpecRefused(
                    f"task {name}: parameter {key!r} given as {what}: not implemented"
                )
        _check_parameter_types(name, inputs, component.input_definitions)
        for key, art in task.inputs.artifacts.items():
            if art.WhichOneof("kind") != "task_output_artifact":
                raise SpecRefused(f"task {name}: artifact {key!r} is not a task output")
            source = art.task_output_artifact
            recorded = self.results[source.producer_task].artifacts[source.output_artifact_key]
            artifact = json_format.ParseDict(recorded, pb.RuntimeArtifact())
            if self.backend == "kfp":
                artifact.type.instance_schema = ""  # what KFP's driver sends (see module doc)
            inputs.artifacts[key].artifacts.append(artifact)
        return inputs

    def _outputs(self, name, component, pod: Path) -> pb.ExecutorInput.Outputs:
        """driver.go provisionOutputs for the played release."""
        release = self.release
        task_root = f"{self.run_root}/{name}"
        if release.uri_salt and self.backend == "kfp":
            task_root += f"/{uuid.uuid4()}"
        output_file = pod / "tmp" / "kfp_outputs" / "output_metadata.json"
        if release.task_root_outputs and mirror_path(task_root):
            output_file = Path(f"{pod}{mirror_path(task_root)}/output_metadata.json")
        outputs = pb.ExecutorInput.Outputs(output_file=str(output_file))
        declared = dict(component.output_definitions.artifacts.items())
        if release.executor_logs and self.backend == "kfp":
            declared[EXECUTOR_LOGS] = pb.ComponentOutputsSpec.ArtifactSpec(
                artifact_type=pb.ArtifactTypeSchema(schema_title="system.Artifact")
            )
        for key, spec in declared.items():
            artifact = pb.RuntimeArtifact(
                uri=f"{task_root}/{key}", type=spec.artifact_type, metadata=spec.metadata
            )
            if release.task_root_outputs:
                artifact.name = key
            outputs.artifacts[key].artifacts.append(artifact)
        for key in component.output_definitions.parameters:
            outputs.parameters[key].output_file = str(pod / "tmp" / "kfp" / "outputs" / key)
        return outputs

    def _record(self, task: str, key: str, artifact: pb.RuntimeArtifact) -> dict:
        """The artifact as ML Metadata keeps it and the driver hands it on: an id for a name,
        the metadata converted (mlmd_metadata), KFP's default display_name."""
        self.cluster.artifact_ids += 1
        recorded = json_format.MessageToDict(artifact)
        recorded["name"] = str(self.cluster.artifact_ids)
        metadata = recorded.get("metadata", {})
        metadata.setdefault("display_name", key)
        if self.release.session_info and self.backend == "kfp":
            metadata.setdefault("store_session_info", json.dumps({"Provider": "played"}))
        recorded["metadata"] = mlmd_metadata(task, metadata)
        return recorded

    # ------------------------------------------------------------------ the pod's disk

    def _pod_folder(self, name: str) -> Path:
        return self.workdir / "pods" / self.run_id / name

    def _pod(self, name: str, label: str) -> tuple[Path, dict[str, Path]]:
        """A fresh folder for the task's pod; the platform spec's volumes mounted at or above a
        mirror folder become per-task volume folders linked in its place."""
        pod = self._pod_folder(name)
        if pod.exists():
            raise TaskFailed(f"task {name}: its pod folder {pod} exists already")
        pod.mkdir(parents=True)
        volumes = {}
        config = self.platform.get(label, {})
        for kind in _MOUNT_KINDS:
            for mount in config.get(kind, []):
                path = mount.get("mountPath", "")
                covered = [
                    f"/{f}"
                    for f in MIRRORS.values()
                    if f"/{f}".startswith(path.rstrip("/") + "/") or f"/{f}" == path.rstrip("/")
                ]
                if not covered:
                    continue
                volume = self.workdir / "volumes" / self.run_id / name
                volume /= mount.get("volumeName") or kind
                target = pod / path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                volume.mkdir(parents=True, exist_ok=True)
                target.symlink_to(volume, target_is_directory=True)
                volumes[path] = volume
        return pod, volumes

    def _local(self, pod: Path, uri: str) -> Path | None:
        mirror = mirror_path(uri) if self.remote else None
        return Path(f"{pod}{mirror}") if mirror else None

    # ------------------------------------------------------------------ executors

    def _import(self, name, component, importer: pb.PipelineDeploymentConfig.ImporterSpec):
        if importer.artifact_uri.WhichOneof("value") != "constant":
            raise SpecRefused(f"task {name}: importer artifactUri must be a constant")
        (key,) = component.output_definitions.artifacts
        artifact = pb.RuntimeArtifact(
            uri=importer.artifact_uri.constant.string_value,
            type=importer.type_schema,
            metadata=importer.metadata,
        )
        return TaskResult(name, None, {}, {key: self._record(name, key, artifact)}, {}, None)

    def _secret_env(self, name: str, label: str) -> dict[str, str]:
        """driver.go: secret_as_env entries as environment variables; a missing secret or key
        keeps the pod from starting (Kubernetes' CreateContainerConfigError)."""
        env = {}
        for entry in self.platform.get(label, {}).get("secretAsEnv", []):
            secret = self.secrets.get(entry["secretName"])
            for pair in entry.get("keyToEnv", []):
                if secret is None or pair["secretKey"] not in secret:
                    raise TaskFailed(
                        f"task {name}: CreateContainerConfigError: secret "
                        f"{entry['secretName']!r} (key {pair['secretKey']!r}) not found"
                    )
                env[pair["envVar"]] = secret[pair["secretKey"]]
        return env

    def _container(self, name, task, component, container) -> TaskResult:
        pod = self._pod_folder(name)
        executor_input = pb.ExecutorInput(
            inputs=self._inputs(name, task, component),
            outputs=self._outputs(name, component, pod),
        )
        release = self.release
        logs = executor_input.outputs.artifacts.get(EXECUTOR_LOGS)
        if logs and release.logs_retry_suffix:  # qualifyExecutorLogsURI, retry index 0
            logs.artifacts[0].uri += "-0"
        cached = None
        if self.backend == "kfp":  # the driver decides before any pod exists
            cached = self._cached(name, task, component, container, executor_input)
            if cached and cached.cached:
                return cached
        pod, volumes = self._pod(name, component.executor_label)
        _add_defaults(executor_input, component.input_definitions)
        env = {
            **_image_env(),
            **self.env,
            **self._secret_env(name, component.executor_label),
            **{e.name: e.value for e in container.env},
            "KFP_POD_NAME": f"{name}-pod",  # argocompiler commonEnvs (downward API)
            "KFP_POD_UID": str(uuid.uuid4()),
            MIRROR_ROOT_ENV: str(pod),
        }
        result = TaskResult(name, json_format.MessageToDict(executor_input), {}, {}, {}, None)
        result.pod, result.volumes = pod, volumes
        result.fingerprint = cached.fingerprint if cached else ""
        for key, listed in executor_input.inputs.artifacts.items():  # downloadArtifacts
            for artifact in listed.artifacts:
                local = self._local(pod, artifact.uri)
                if local:
                    result.downloaded[key] = self.store.download(
                        artifact.uri, local, release.exact_prefix
                    )
        for listed in executor_input.outputs.artifacts.values():  # prepareOutputFolders
            local = self._local(pod, listed.artifacts[0].uri)
            if local:
                local.parent.mkdir(parents=True, exist_ok=True)
        for param in executor_input.outputs.parameters.values():
            Path(param.output_file).parent.mkdir(parents=True, exist_ok=True)
        Path(executor_input.outputs.output_file).parent.mkdir(parents=True, exist_ok=True)

        result.log = self.workdir / "logs" / self.run_id / f"{name}.txt"
        result.log.parent.mkdir(parents=True, exist_ok=True)
        writers = [open(result.log, "w")]  # noqa: SIM115 (closed below)
        if logs:  # getLogWriter: the mirror, uploaded after (a local root: the file itself)
            log_file = self._local(pod, logs.artifacts[0].uri) or Path(logs.artifacts[0].uri)
            log_file.parent.mkdir(parents=True, exist_ok=True)
            writers.append(open(log_file, "w"))  # noqa: SIM115
        try:
            if container.HasField("lifecycle") and container.lifecycle.HasField("pre_cache_check"):
                if self.backend == "vertex":
                    check = container.lifecycle.pre_cache_check
                    self._exec(name, check.command, check.args, executor_input, env, writers)
                else:
                    print(f"[{name}] preCacheCheck not run (KFP ignores it)", file=writers[0])
            self._exec(name, container.command, container.args, executor_input, env, writers)
        finally:
            for writer in writers:
                writer.close()

        output_file = Path(executor_input.outputs.output_file)
        if output_file.exists():
            result.executor_output = json.loads(output_file.read_text())
        output = json_format.ParseDict(result.executor_output, pb.ExecutorOutput())
        # uploadOutputArtifacts (Go's map order is random: sorted here, for stable MLMD ids)
        for key, listed in sorted(executor_input.outputs.artifacts.items()):
            artifact = listed.artifacts[0]
            launcher_managed = key == EXECUTOR_LOGS and release.exact_prefix  # 2.17: not merged
            if output.artifacts[key].artifacts and not launcher_managed:
                written = output.artifacts[key].artifacts[0]  # mergeRuntimeArtifacts
                artifact.uri = written.uri or artifact.uri
                artifact.metadata.update(written.metadata)
            local = self._local(pod, artifact.uri)
            if local and local.exists():
                result.uploaded[key] = self.store.upload(local, artifact.uri)
            elif local:
                print(f"[{name}] Local filepath {local} does not exist", file=sys.stderr)
            on_disk = local.exists() if local else Path(artifact.uri).exists()
            if not on_disk and key == EXECUTOR_LOGS and release.exact_prefix:
                continue  # 2.17 records no executor-logs that were never written
            result.artifacts[key] = self._record(name, key, artifact)
        result.parameters = {
            k: json_format.MessageToDict(v) for k, v in output.parameter_values.items()
        }
        for key, param in executor_input.outputs.parameters.items():
            if key not in result.parameters:
                result.parameters[key] = Path(param.output_file).read_text()
        return result

    def _exec(self, name, command, args, executor_input, env, writers) -> None:
        argv = [_substitute(name, a, executor_input) for a in [*command, *args]]
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # the image's interpreter is this venv's
        warm = self.warm and argv[0] == sys.executable and len(argv) > 2 and argv[1] == "-m"
        how = " (forked from a warm process)" if warm else ""
        print(f"[{name}] $ {' '.join(argv[:3])} ...{how}", file=writers[0], flush=True)
        if warm:
            # TFX's entry point imports the step's executor (2 s for the project's own).
            flag = "--executor_class_path"
            preload = [argv[argv.index(flag) + 1].rpartition(".")[0]] if flag in argv[:-1] else []
            process = _zygote(argv[2], env).start(argv[2], argv[3:], env, REPO_ROOT, preload)
        else:
            process = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        tail = collections.deque(maxlen=40)
        for line in process.stdout:
            for writer in writers:
                writer.write(line)
            tail.append(line)
            if self.echo:
                self.echo.write(f"[{name}] {line}")
        if process.wait():
            raise TaskFailed(
                f"task {name} failed (exit {process.returncode}); last lines of "
                f"{writers[0].name}:\n" + "".join(tail)
            )


def _zygote(module: str, env: dict[str, str]) -> zygote.Zygote:
    """The zygote that imported `module` with the pod's import-time environment (started on
    first use: the image's environment, as a pod has it before the task's own)."""
    key = (module, zygote.import_time_env(env))
    if key not in _zygotes:
        image = {k: v for k, v in _image_env().items() if not zygote.import_time_env({k: v})}
        _zygotes[key] = zygote.Zygote([module], {**image, **dict(key[1])}, REPO_ROOT)
    return _zygotes[key]


def _image_env() -> dict[str, str]:
    """A pod's environment before its task's own: this process's, less its AWS_* settings (a
    pod inherits none), plus the image's ENV."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **IMAGE_ENV}


@atexit.register
def close_zygotes() -> None:
    """Ends the zygotes this process started."""
    while _zygotes:
        _zygotes.popitem()[1].close()


# ---------------------------------------------------------------------- the driver's checks


def _refuse_control_flow(name: str, task: pb.PipelineTaskSpec) -> None:
    if task.trigger_policy.condition:
        raise SpecRefused(f"task {name}: triggerPolicy condition {task.trigger_policy.condition!r}")
    if (
        task.trigger_policy.strategy
        > pb.PipelineTaskSpec.TriggerPolicy.ALL_UPSTREAM_TASKS_SUCCEEDED
    ):
        raise SpecRefused(f"task {name}: triggerPolicy strategy {task.trigger_policy.strategy}")
    if task.WhichOneof("iterator"):
        raise SpecRefused(f"task {name}: iterators (ParallelFor) are not supported here")


def _refuse_checkout_path(name: str, key: str, value: struct_pb2.Value) -> None:
    """The image holds the code at its WORKDIR, not where the spec was compiled."""
    if str(REPO_ROOT) + os.sep in value.string_value:
        raise SpecRefused(
            f"task {name}: parameter {key!r} names a path in the compiling checkout "
            f"({value.string_value[:120]}), which the image does not have"
        )


def _check_parameter_types(name, inputs, definitions: pb.ComponentInputsSpec) -> None:
    """driver.go: a STRING parameter takes any value as text; other types must match."""
    types = pb.ParameterType
    allowed = {
        "number_value": (types.NUMBER_DOUBLE, types.NUMBER_INTEGER),
        "bool_value": (types.BOOLEAN,),
        "list_value": (types.LIST,),
        "struct_value": (types.STRUCT,),
        "string_value": (),
    }
    for key, value in inputs.parameter_values.items():
        spec = definitions.parameters.get(key)
        if spec is None or not spec.parameter_type:
            continue
        kind = value.WhichOneof("kind")
        if spec.parameter_type == types.STRING:
            if kind != "string_value":
                inputs.parameter_values[key].string_value = _text(value)
        elif kind == "null_value" or spec.parameter_type not in allowed[kind]:
            expected = types.ParameterTypeEnum.Name(spec.parameter_type)
            raise SpecRefused(
                f"task {name}: input parameter {key!r} type mismatch: expect "
                f"{expected}, got {kind}"
            )
    for key, spec in definitions.parameters.items():
        given = key in inputs.parameter_values or key in inputs.parameters
        if not given and not spec.is_optional and not spec.HasField("default_value"):
            raise SpecRefused(f"task {name}: neither value nor default for parameter {key!r}")


def _add_defaults(executor_input: pb.ExecutorInput, definitions: pb.ComponentInputsSpec) -> None:
    """launcher_v2.go addDefaultParams: defaults fill what the task did not give."""
    values = executor_input.inputs.parameter_values
    for key, spec in definitions.parameters.items():
        if key not in values and spec.HasField("default_value"):
            values[key].CopyFrom(spec.default_value)


def _substitute(name: str, arg: str, executor_input: pb.ExecutorInput) -> str:
    """The launcher's placeholders (launcher_v2.go getPlaceholders); any other is refused."""
    if arg.lstrip().startswith(('{"Concat"', '{"IfPresent"')):
        raise SpecRefused(f"task {name}: structured placeholder {arg[:40]!r}")
    table = {"{{$}}": json_format.MessageToJson(executor_input, indent=None)}
    for key, listed in executor_input.inputs.artifacts.items():
        table[f"{{{{$.inputs.artifacts['{key}'].uri}}}}"] = listed.artifacts[0].uri
    for key, listed in executor_input.outputs.artifacts.items():
        table[f"{{{{$.outputs.artifacts['{key}'].uri}}}}"] = listed.artifacts[0].uri
    for key, value in executor_input.inputs.parameter_values.items():
        table[f"{{{{$.inputs.parameters['{key}']}}}}"] = _text(value)
    for key, param in executor_input.outputs.parameters.items():
        table[f"{{{{$.outputs.parameters['{key}'].output_file}}}}"] = param.output_file
    if left := [p for p in _PLACEHOLDER.findall(arg) if p not in table]:  # in the template
        raise SpecRefused(f"task {name}: unsupported placeholder {left[0]}")
    for placeholder, value in table.items():
        arg = arg.replace(placeholder, value)
    return arg


def _text(value: struct_pb2.Value) -> str:
    """A parameter as text, as KFP writes it (numbers as Go's FormatFloat 'f', -1: 1, not 1.0)."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return (
            f"{value.number_value:.17g}" if value.number_value % 1 else str(int(value.number_value))
        )
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    return json.dumps(json_format.MessageToDict(value), separators=(",", ":"))
