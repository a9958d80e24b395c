"""Runs a compiled KFP v2 pipeline spec here, the way Kubeflow Pipelines' backend would.

No cluster is reachable from the tests, so this plays KFP 2.x's driver and launcher
(kubeflow/pipelines backend/src/v2: driver/driver.go, component/launcher_v2.go) for the parts a
TFX spec uses: the root DAG's tasks in dependency order, one local subprocess per container task
(the spec's own command and args, `python` being this interpreter and the repository root the
image's WORKDIR), ExecutorInput built as the driver builds it, the task's ExecutorOutput read
back and recorded for its consumers. What the backend cannot run is refused with its words.

`backend` picks who is played:
- "kfp" (default), open-source Kubeflow Pipelines 2.x: only `runtimeValue.constant` parameters,
  `lifecycle.preCacheCheck` is never run (the backend does not read it), and an upstream
  artifact reaches its consumer with `type: {instanceSchema: ""}` (the backend does not keep
  artifact schemas: metadata/client.go GetOutputArtifactsByExecutionId, "TODO: figure out how
  to get schema").
- "vertex", what TFX's container entrypoint was written for (Vertex AI Pipelines): the
  preCacheCheck driver runs first and writes the output file the executor then reads,
  deprecated `constantValue` parameters arrive as `inputs.parameters`, and input artifacts carry
  their declared types.

Stand-ins: artifact URIs are local paths (KFP's launcher takes only gs://, s3:// and minio://),
so each output artifact's folder is made first, as writing under a bucket prefix needs none;
nothing is cached.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format, struct_pb2
from kfp.pipeline_spec import pipeline_spec_pb2 as pb

REPO_ROOT = Path(__file__).resolve().parents[2]
# The image's environment (Dockerfile ENV) beyond the interpreter.
IMAGE_ENV = {"PYTHONPATH": str(REPO_ROOT), "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
SCHEMA_VERSIONS = ("2.0.0", "2.1.0")  # what KFP 2.x's backend reads
BACKENDS = ("kfp", "vertex")
_PLACEHOLDER = re.compile(r"\{\{\$[^}]*\}\}")


class SpecRefused(ValueError):
    """The spec uses something the played backend cannot run."""


class TaskFailed(RuntimeError):
    """A task's command exited non-zero."""


@dataclasses.dataclass
class TaskResult:
    name: str
    executor_input: dict | None  # as the command received it (None for importers)
    executor_output: dict  # the ExecutorOutput file the command wrote ({} when none)
    artifacts: dict[str, dict]  # output key -> RuntimeArtifact as recorded (name, uri, metadata)
    parameters: dict[str, Any]  # output parameter values
    log: Path | None


def load_spec(spec: str | os.PathLike | dict) -> tuple[pb.PipelineSpec, dict]:
    """(PipelineSpec, runtimeConfig) from a PipelineJob JSON, a PipelineSpec YAML, or a dict."""
    if not isinstance(spec, dict):
        text = Path(spec).read_text()
        spec = json.loads(text) if str(spec).endswith(".json") else yaml.safe_load(text)
    runtime_config = spec.get("runtimeConfig", {}) if "pipelineSpec" in spec else {}
    spec = spec.get("pipelineSpec", spec)
    return json_format.ParseDict(spec, pb.PipelineSpec()), runtime_config


def run_pipeline_spec(
    spec: str | os.PathLike | dict,
    pipeline_root: str | os.PathLike | None = None,
    run_id: str = "run-1",
    backend: str = "kfp",
    echo=None,
) -> dict[str, TaskResult]:
    """Runs every task of the spec's root DAG; returns task name -> TaskResult.

    pipeline_root: where artifacts go (default: the job's gcsOutputDirectory or the spec's
    defaultPipelineRoot), as `<root>/<pipeline name>/<run_id>/<task>/<output key>`.
    echo: a text stream that also receives each task's log lines (default: log files only).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    spec, runtime_config = load_spec(spec)
    if spec.schema_version not in SCHEMA_VERSIONS:
        raise SpecRefused(f"schemaVersion {spec.schema_version!r} is not one of {SCHEMA_VERSIONS}")
    if spec.root.input_definitions.parameters or spec.root.input_definitions.artifacts:
        raise SpecRefused("pipeline-level inputs (runtime parameters) are not supported here")
    root = pipeline_root or runtime_config.get("gcsOutputDirectory") or spec.default_pipeline_root
    if not root:
        raise SpecRefused("no pipeline root: pass one, or compile a job with gcsOutputDirectory")
    run_root = Path(root) / spec.pipeline_info.name / run_id
    deployment = json_format.ParseDict(
        json_format.MessageToDict(spec.deployment_spec), pb.PipelineDeploymentConfig()
    )
    run = _Run(spec, deployment, run_root, backend, echo)
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
        if unknown := deps - set(tasks):
            raise SpecRefused(f"task {name} depends on unknown tasks {sorted(unknown)}")
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


class _Run:
    def __init__(self, spec, deployment, run_root: Path, backend: str, echo):
        self.spec, self.deployment, self.run_root = spec, deployment, run_root
        self.backend, self.echo = backend, echo
        self.results: dict[str, TaskResult] = {}
        self.artifact_ids = 0  # MLMD's ids: the driver names input artifacts by them

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
            return self._import(name, component, executor.importer)
        return self._container(name, task, component, executor.container)

    # ------------------------------------------------------------------ inputs and outputs

    def _inputs(self, name, task, component) -> pb.ExecutorInput.Inputs:
        inputs = pb.ExecutorInput.Inputs()
        for key, param in task.inputs.parameters.items():
            kind = param.WhichOneof("kind")
            if kind == "runtime_value" and param.runtime_value.HasField("constant"):
                _refuse_checkout_path(name, key, param.runtime_value.constant)
                inputs.parameter_values[key].CopyFrom(param.runtime_value.constant)
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

    def _outputs(self, name, component, files: Path) -> pb.ExecutorInput.Outputs:
        outputs = pb.ExecutorInput.Outputs(output_file=str(files / "output_metadata.json"))
        for key, spec in component.output_definitions.artifacts.items():
            uri = self.run_root / name / key
            uri.mkdir(parents=True)  # a bucket needs no folders; a local stand-in does
            outputs.artifacts[key].artifacts.append(
                pb.RuntimeArtifact(
                    uri=str(uri),
                    type=spec.artifact_type,
                    metadata=spec.metadata,
                )
            )
        for key in component.output_definitions.parameters:
            outputs.parameters[key].output_file = str(files / "parameters" / key)
        return outputs

    def _record(self, key: str, artifact: pb.RuntimeArtifact) -> dict:
        """The artifact as MLMD keeps it and the driver hands it on: an id for a name, the
        metadata as custom properties (with KFP's default display_name)."""
        self.artifact_ids += 1
        recorded = pb.RuntimeArtifact()
        recorded.CopyFrom(artifact)
        recorded.name = str(self.artifact_ids)
        if "display_name" not in recorded.metadata:
            recorded.metadata["display_name"] = key
        return json_format.MessageToDict(recorded)

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
        return TaskResult(name, None, {}, {key: self._record(key, artifact)}, {}, None)

    def _container(self, name, task, component, container) -> TaskResult:
        files = self.run_root / name / "kfp_outputs"
        files.mkdir(parents=True, exist_ok=True)
        executor_input = pb.ExecutorInput(
            inputs=self._inputs(name, task, component),
            outputs=self._outputs(name, component, files),
        )
        _add_defaults(executor_input, component.input_definitions)
        env = {**os.environ, **IMAGE_ENV, **{e.name: e.value for e in container.env}}
        log = files / "log.txt"
        with open(log, "w") as log_file:
            if container.HasField("lifecycle") and container.lifecycle.HasField("pre_cache_check"):
                if self.backend == "vertex":
                    check = container.lifecycle.pre_cache_check
                    self._exec(name, check.command, check.args, executor_input, env, log_file)
                else:
                    print(f"[{name}] preCacheCheck not run (KFP ignores it)", file=log_file)
            self._exec(name, container.command, container.args, executor_input, env, log_file)
        executor_output = {}
        if Path(executor_input.outputs.output_file).exists():
            executor_output = json.loads(Path(executor_input.outputs.output_file).read_text())
        output = json_format.ParseDict(executor_output, pb.ExecutorOutput())
        artifacts = {}
        for key, listed in executor_input.outputs.artifacts.items():
            artifact = listed.artifacts[0]
            if output.artifacts[key].artifacts:  # launcher_v2.go mergeRuntimeArtifacts
                written = output.artifacts[key].artifacts[0]
                artifact.uri = written.uri or artifact.uri
                artifact.metadata.update(written.metadata)
            artifacts[key] = self._record(key, artifact)
        parameters = {k: json_format.MessageToDict(v) for k, v in output.parameter_values.items()}
        for key, param in executor_input.outputs.parameters.items():
            if key not in parameters:
                parameters[key] = Path(param.output_file).read_text()
        return TaskResult(
            name,
            json_format.MessageToDict(executor_input),
            executor_output,
            artifacts,
            parameters,
            log,
        )

    def _exec(self, name, command, args, executor_input, env, log_file) -> None:
        argv = [_substitute(name, a, executor_input) for a in [*command, *args]]
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # the image's interpreter is this venv's
        print(f"[{name}] $ {' '.join(argv[:3])} ...", file=log_file, flush=True)
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
            log_file.write(line)
            tail.append(line)
            if self.echo:
                self.echo.write(f"[{name}] {line}")
        if process.wait():
            raise TaskFailed(
                f"task {name} failed (exit {process.returncode}); last lines of {log_file.name}:\n"
                + "".join(tail)
            )


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
    for placeholder, value in table.items():
        arg = arg.replace(placeholder, value)
    if left := _PLACEHOLDER.findall(arg):
        raise SpecRefused(f"task {name}: unsupported placeholder {left[0]}")
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
