"""Every Kubeflow step's entry point: TFX's own, adapted to Kubeflow Pipelines' launcher.

    python -m pipeline.kfp_entrypoint --executor_class_path ... --json_serialized_invocation_args ...

What the adapter does, each read in kubeflow/pipelines' backend (backend/src/v2, tags 2.0.0 to
2.17.0) and TFX 1.16's entry point (tfx/orchestration/kubeflow/v2/container):

- **Input types** (2.0-2.17). The backend keeps no artifact schemas and hands every upstream
  artifact over as `type: {instanceSchema: ""}`; TFX takes the artifact's class from that schema
  and fails with "'NoneType' object has no attribute 'get'" (tensorflow/tfx#7768). Each empty
  type is filled from the component's own inputs spec (--json_serialized_inputs_spec_args).
- **Outputs the launcher adds** (2.5-2.17). With the API server's PUBLISH_LOGS=true (the stock
  manifests) the driver adds an output `executor-logs` of type `system.Artifact` to every step
  (driver.go provisionOutputs); TFX cannot import that type ("Could not import
  system.Artifact"). The launcher itself tees the command's stdout and stderr into that
  artifact's local path and uploads it (launcher_v2.go getLogWriter), so the step leaves it
  alone: every output of KFP's own `system.*` types is hidden from TFX and left out of the
  ExecutorOutput (where 2.5-2.16 would merge whatever the step wrote over the launcher's).
- **Storage** (2.0-2.17). Before the command the launcher downloads every input artifact from
  gs://, minio:// or s3:// to a local mirror, `/gcs|/minio|/s3/<bucket>/<key>`, creates the
  parent folder of each output's mirror path, and after the command uploads each output's mirror
  path to its URI (launcher_v2.go downloadArtifacts, prepareOutputFolders,
  uploadOutputArtifacts; LocalPathForURI); its pod has KFP_POD_NAME set (argocompiler's
  commonEnvs), which Vertex AI Pipelines' has not. TensorFlow in this image reads gs:// and local paths
  only, so a step that runs in its pod reads and writes the mirror: artifact URIs become mirror
  paths for TFX (output folders made, as TFX's own launcher makes them), and the ExecutorOutput
  maps them back, URIs and metadata, so ML Metadata and the next steps see remote URIs. Steps
  whose artifacts are read elsewhere keep remote URIs: with a distributed Beam runner
  (Dataflow, Flink, Spark) the workers cannot see the pod's disk, nor can the replicas of a
  TFJob or Vertex AI Trainer. Those need a root TensorFlow reads everywhere: gs://.
  Data roots and serving directories are not artifacts: data.storage reads them (s3:// through
  Beam's S3 client) and components.s3_fileio gives TFX's Pusher s3://.

`KFP_LAUNCHER_MIRROR_ROOT` (default "/") is where the mirrors lie. The launcher's are fixed at
/gcs, /minio and /s3; the variable is the seam that lets tests play the launcher without root.
"""

from __future__ import annotations

import json
import os
import shlex

from absl import app, logging
from tfx.dsl.io import fileio
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as tfx_utils
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor as tfx_entrypoint
from tfx.orchestration.portable import outputs_utils

from components import s3_fileio  # noqa: F401 (s3:// serving directories for TFX's Pusher)

MIRROR_ROOT_ENV = "KFP_LAUNCHER_MIRROR_ROOT"
# launcher_v2.go LocalPathForURI, 2.0.0-2.17.0: the scheme's local mirror folder.
MIRRORS = {"gs://": "gcs", "minio://": "minio", "s3://": "s3"}
LAUNCHER_TYPES = "system."  # KFP's own artifact types (executor-logs is a system.Artifact)
LAUNCHER_ENV = "KFP_POD_NAME"  # set on every executor pod KFP's launcher runs (2.0-2.17)
# Beam runners whose workers share the pod's disk (as Beam resolves names: "direct", "DirectRunner").
IN_POD_RUNNERS = ("", "direct", "bundlebaseddirect", "switchingdirect", "prism")
# Executors whose artifacts are read by other machines (the replicas they start).
REMOTE_EXECUTORS = (
    "components.tfjob_trainer.TFJobExecutor",
    "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor",
    "tfx.extensions.google_cloud_ai_platform.trainer.executor.Executor",
)


class StorageError(ValueError):
    """Artifacts stay remote where TensorFlow cannot read their scheme."""


def default_serving_dir(pipeline_root: str) -> str:
    """<pipeline root>/serving, as s3:// where the root is KFP's minio:// (KServe, TF and boto3
    know MinIO's buckets as s3://)."""
    root = pipeline_root.rstrip("/")
    if root.startswith("minio://"):
        root = "s3://" + root[len("minio://") :]
    return f"{root}/serving"


def check_storage(
    pipeline_root: str, data_root: str, serving_dir: str, beam_args: list[str], remote_trainer: bool
) -> None:
    """Refuses, before anything runs, storage the steps could not read (StorageError)."""
    for what, path in (("data root", data_root), ("serving dir", serving_dir)):
        if path.startswith("minio://"):
            raise StorageError(
                f"{what} {path}: MinIO's buckets are s3:// here (with --s3-endpoint), as KServe "
                "and boto3 name them; minio:// is only Kubeflow Pipelines' artifact root"
            )
    elsewhere = []
    if not in_pod_runner(beam_runner(beam_args)):
        elsewhere.append(f"Beam's {beam_runner(beam_args)} workers")
    if remote_trainer:
        elsewhere.append("the Trainer's replicas (TFJob / Vertex AI)")
    if elsewhere and local_path(pipeline_root) and not pipeline_root.startswith("gs://"):
        raise StorageError(
            f"pipeline root {pipeline_root}: {' and '.join(elsewhere)} read artifacts outside the "
            "step's pod, where TensorFlow reads gs:// and local paths only: use a gs:// root"
        )


def mirror_root() -> str:
    return os.environ.get(MIRROR_ROOT_ENV, "/")


def local_path(uri: str, root: str = "/") -> str | None:
    """The launcher's mirror path of `uri` under `root`, or None for other schemes."""
    for scheme, folder in MIRRORS.items():
        if uri.startswith(scheme):
            return os.path.join(root, folder, uri[len(scheme) :])
    return None


def remote_uri(path: str, root: str = "/") -> str | None:
    """The inverse of local_path: the URI whose mirror `path` is, or None."""
    for scheme, folder in MIRRORS.items():
        mirror = os.path.join(root, folder) + os.sep
        if path.startswith(mirror):
            return scheme + path[len(mirror) :]
    return None


def in_pod_runner(runner: str) -> bool:
    return runner.lower().removesuffix("runner") in IN_POD_RUNNERS


def beam_runner(beam_args: list[str]) -> str:
    """The --runner among Beam's flags ("" when none: DirectRunner)."""
    for i, arg in enumerate(beam_args):
        if arg.startswith("--runner="):
            return arg.split("=", 1)[1]
        if arg == "--runner" and i + 1 < len(beam_args):
            return beam_args[i + 1]
    return ""


def reads_in_pod(executor_class_path: str, beam_args: list[str]) -> bool:
    """Whether KFP's launcher runs this step and everything reading its artifacts is in its pod."""
    if LAUNCHER_ENV not in os.environ:
        return False
    return executor_class_path not in REMOTE_EXECUTORS and in_pod_runner(beam_runner(beam_args))


def _artifacts(executor_input: dict, side: str) -> dict:
    return executor_input.get(side, {}).get("artifacts", {})


def _title(artifact: dict) -> str:
    kind = artifact.get("type", {})
    return kind.get("schemaTitle") or ""


def for_tfx(
    executor_input: dict, inputs_spec: dict, in_pod: bool, root: str = "/"
) -> tuple[dict, list[str]]:
    """(the ExecutorInput TFX is given, the launcher's outputs left out of it).

    Untyped inputs get their declared types; outputs of KFP's system.* types are dropped; in
    the pod, artifact URIs become the launcher's mirror paths under `root`.
    """
    executor_input = json.loads(json.dumps(executor_input))  # the caller's stays as it was
    declared = inputs_spec.get("artifacts", {})
    for key, listed in _artifacts(executor_input, "inputs").items():
        for artifact in listed.get("artifacts", []):
            if not any(artifact.get("type", {}).values()) and key in declared:
                artifact["type"] = declared[key]["artifactType"]
    outputs = _artifacts(executor_input, "outputs")
    launcher_outputs = sorted(
        key
        for key, listed in outputs.items()
        if any(_title(a).startswith(LAUNCHER_TYPES) for a in listed.get("artifacts", []))
    )
    for key in launcher_outputs:
        del outputs[key]
    for side in ("inputs", "outputs"):
        for key, listed in _artifacts(executor_input, side).items():
            for artifact in listed.get("artifacts", []):
                uri = artifact.get("uri", "")
                if in_pod:
                    artifact["uri"] = local_path(uri, root) or uri
                elif local_path(uri) is not None and not uri.startswith("gs://"):
                    raise StorageError(
                        f"{side} artifact {key!r} is at {uri}, and this step's artifacts are read "
                        "outside its pod (a distributed Beam runner, or a TFJob / Vertex AI "
                        "Trainer), where TensorFlow reads gs:// and local paths only: use a gs:// "
                        "pipeline root there, or run Beam in the pod (DirectRunner)"
                    )
    return executor_input, launcher_outputs


def _remote_value(value, root: str):
    if isinstance(value, str):
        return remote_uri(value, root) or value
    if isinstance(value, list):
        return [_remote_value(v, root) for v in value]
    if isinstance(value, dict):
        return {k: _remote_value(v, root) for k, v in value.items()}
    return value


def for_kfp(executor_output: dict, launcher_outputs: list[str], root: str = "/") -> dict:
    """TFX's ExecutorOutput as the launcher must read it: mirror paths (URIs and metadata
    strings) back to remote URIs; nothing about the launcher's own outputs."""
    executor_output = _remote_value(executor_output, root)
    for key in launcher_outputs:
        executor_output.get("artifacts", {}).pop(key, None)
    return executor_output


def make_output_dirs(executor_input: dict) -> None:
    """The output folders in the mirror (the launcher makes only their parents), as TFX's own
    launcher makes them: a folder per artifact, the parent of a value artifact's file."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    parsed = json_format.ParseDict(
        executor_input, pipeline_spec_pb2.ExecutorInput(), ignore_unknown_fields=True
    )
    outputs_utils.make_output_dirs(tfx_utils.parse_raw_artifact_dict(parsed.outputs.artifacts))


def run(args, beam_args: list[str]) -> None:
    """TFX's entry point on the adapted ExecutorInput; then its ExecutorOutput adapted back."""
    root = mirror_root()
    in_pod = reads_in_pod(args.executor_class_path, beam_args)
    executor_input, launcher_outputs = for_tfx(
        json.loads(args.json_serialized_invocation_args),
        json.loads(args.json_serialized_inputs_spec_args or "{}"),
        in_pod,
        root,
    )
    if launcher_outputs:
        logging.info("Left to Kubeflow's launcher: outputs %s", ", ".join(launcher_outputs))
    if in_pod:
        logging.info("Artifacts read and written in the launcher's local mirror under %s", root)
        make_output_dirs(executor_input)
    else:
        logging.info("Artifacts stay remote (read by %s)", args.executor_class_path)
    args.json_serialized_invocation_args = json.dumps(executor_input)
    tfx_entrypoint._run_executor(args, beam_args)

    output_file = executor_input["outputs"]["outputFile"]  # gs:// on Vertex AI
    with fileio.open(output_file) as f:
        executor_output = json.load(f)
    with fileio.open(output_file, "w") as f:
        f.write(json.dumps(for_kfp(executor_output, launcher_outputs, root)))


def main(parsed) -> None:
    args, beam_args = parsed
    logging.info("Beam arguments: %s", shlex.join(beam_args))
    run(args, beam_args)


if __name__ == "__main__":
    app.run(main, flags_parser=tfx_entrypoint._parse_flags)
