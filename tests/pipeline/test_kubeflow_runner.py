"""kubeflow_runner.py: compile (the spec and its Kubernetes platform document, parsed with kfp's
and kfp-kubernetes' protos), submit and schedule (against a KFP API stand-in on loopback). The
compiled spec is run for real in test_kubeflow_run.py."""

import http.server
import json
import os
import threading

import kfp.components
import pytest
import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s
from kfp.pipeline_spec import pipeline_spec_pb2

import kubeflow_runner
from model.options import OPTIONS_KEY, TrainOptions
from pipeline import configs
from pipeline.pipeline import create_pipeline

BEAM_STEPS = ("VideoExampleGen", "StatisticsGen", "Transform", "Evaluator")
# The steps whose pods hold UCF101-size artifacts: they read or write examples.
LARGE_STEPS = {"VideoExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator"}


def _compile(tmp_path, *flags, filename="pipeline.yaml", command="compile"):
    out = tmp_path / filename
    kubeflow_runner.main([command, "--output", str(out), *flags])
    return out


def _documents(path) -> list[dict]:
    """The YAML documents of a compiled spec: the PipelineSpec, then the platform spec if any."""
    return list(yaml.safe_load_all(path.read_text()))


def _spec(path) -> pipeline_spec_pb2.PipelineSpec:
    return json_format.ParseDict(_documents(path)[0], pipeline_spec_pb2.PipelineSpec())


def _pods(path) -> dict[str, k8s.KubernetesExecutorConfig]:
    """{task: its KubernetesExecutorConfig} from the platform document, as the backend reads it."""
    spec, *platform = _documents(path)
    assert len(platform) <= 1
    parsed = json_format.ParseDict(
        platform[0] if platform else {}, pipeline_spec_pb2.PlatformSpec()
    )
    executors = parsed.platforms["kubernetes"].deployment_spec.executors
    tasks = _spec(path).root.dag.tasks
    by_label = {_executor_label(spec, name): name for name in tasks}
    assert set(executors) <= set(by_label), "platform configs of executors the spec lacks"
    return {
        by_label[label]: json_format.ParseDict(
            json_format.MessageToDict(config), k8s.KubernetesExecutorConfig()
        )
        for label, config in executors.items()
    }


def _executor_label(spec: dict, task: str) -> str:
    component = spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]
    return spec["components"][component]["executorLabel"]


@pytest.fixture(scope="module")
def default_spec(tmp_path_factory):
    """`kubeflow_runner.py compile` with no flags, in an empty folder: every default from configs."""
    folder, cwd = tmp_path_factory.mktemp("default"), os.getcwd()
    os.chdir(folder)
    try:
        kubeflow_runner.main(["compile"])
    finally:
        os.chdir(cwd)
    return folder / f"{configs.PIPELINE_NAME}.yaml"


def _container(spec, task):
    label = spec.components[spec.root.dag.tasks[task].component_ref.name].executor_label
    executor = spec.deployment_spec.fields["executors"].struct_value.fields[label]
    container = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec()
    json_format.ParseDict(
        json_format.MessageToDict(executor.struct_value.fields["container"].struct_value),
        container,
    )
    return container


def _trainer_settings(spec) -> dict:
    """The Trainer's custom_config as compiled: TrainingPlan's `trainer_settings`, which it hands
    the Trainer at run time with the run's plan of spans added."""
    trainer = spec.root.dag.tasks["Trainer"].inputs.parameters["custom_config"]
    assert trainer.task_output_parameter.producer_task == "TrainingPlan"
    assert trainer.task_output_parameter.output_parameter_key == "trainer_config"
    params = spec.root.dag.tasks["TrainingPlan"].inputs.parameters
    return json.loads(params["trainer_settings"].runtime_value.constant.string_value)


def _train_options(spec) -> TrainOptions:
    return TrainOptions.from_json(_trainer_settings(spec)[OPTIONS_KEY])


def test_compile_with_no_flags_writes_the_local_pipeline(default_spec):
    spec = _spec(default_spec)
    assert spec.schema_version == "2.1.0" and spec.pipeline_info.name == configs.PIPELINE_NAME
    assert spec.default_pipeline_root == configs.KUBEFLOW_PIPELINE_ROOT
    # Every component of the local pipeline, each after the ones it depends on, in the same order.
    local = create_pipeline("p", "/root", configs.KUBEFLOW_DATA_ROOT, "/serving")
    order = [c.id for c in local.components]
    tasks = spec.root.dag.tasks
    assert set(tasks) == set(order)
    for name, task in tasks.items():
        upstream = set(task.dependent_tasks) | {
            a.task_output_artifact.producer_task for a in task.inputs.artifacts.values()
        }
        assert all(order.index(u) < order.index(name) for u in upstream), name
        assert {c.id for c in local.components[order.index(name)].upstream_nodes} == upstream
    # Kubeflow Pipelines' backend runs containers (no resolvers) and reads parameter constants,
    # and upstream outputs from tasks that exist (TFX names them "<id>_task": renamed).
    for name, task in tasks.items():
        assert _container(spec, name).image == configs.KUBEFLOW_IMAGE, name
        assert _container(spec, name).command == kubeflow_runner.ENTRYPOINT, name
        for param in task.inputs.parameters.values():
            upstream = param.task_output_parameter.producer_task
            assert param.runtime_value.HasField("constant") or upstream in tasks, name
            assert not upstream or upstream in task.dependent_tasks, name
    # Every step is cached but the span resolvers, which look at the data in every run.
    for name, task in tasks.items():
        assert task.caching_options.enable_cache == (name not in ("NewSpans", "TrainingPlan"))
    for name in ("NewSpans", "TrainingPlan"):
        run = tasks[name].inputs.parameters["run"].runtime_value.constant.string_value
        assert run == "{{$.pipeline_job_uuid}}"
    ingest = tasks["VideoExampleGen"].inputs.parameters["spans"].task_output_parameter
    assert (ingest.producer_task, ingest.output_parameter_key) == ("NewSpans", "ingest")
    registry = f"{configs.KUBEFLOW_PIPELINE_ROOT}/{configs.PIPELINE_NAME}/spans"
    for name in ("NewSpans", "VideoExampleGen", "RegisterSpans", "TrainingPlan"):
        value = tasks[name].inputs.parameters["span_registry"].runtime_value.constant
        assert value.string_value == registry, name
    assert tasks["Trainer"].inputs.artifacts["base_model"].task_output_artifact.producer_task == (
        "LatestPushedModel"
    )
    # Only the Trainer asks for a GPU (configs' default), and its run_fn is told to require it.
    trainer = _container(spec, "Trainer").resources
    assert (trainer.accelerator.resource_type, trainer.accelerator.resource_count) == (
        configs.KUBEFLOW_GPU_TYPE,
        str(configs.KUBEFLOW_TRAINER_GPUS),
    )
    assert trainer.resource_memory_limit == configs.KUBEFLOW_TRAINER_MEMORY
    assert trainer.cpu_limit == configs.KUBEFLOW_TRAINER_CPU
    assert _train_options(spec).gpus == configs.KUBEFLOW_TRAINER_GPUS
    assert _train_options(spec).variant == configs.TRAIN_OPTIONS.variant
    for name in set(tasks) - {"Trainer"}:
        assert not _container(spec, name).HasField("resources"), name
    serving = tasks["Pusher"].inputs.parameters["push_destination"].runtime_value.constant
    assert f"{configs.KUBEFLOW_PIPELINE_ROOT}/serving/{configs.MODEL_NAME}" in serving.string_value


def test_steps_with_examples_get_a_volume_where_the_launcher_copies_their_artifacts(
    default_spec,
):
    """KFP's launcher copies a gs:// root's input artifacts under /gcs before a step runs: the
    steps that read or write examples get a volume of --step-disk there (sized for UCF101), in
    the platform document the API server reads; light steps and the defaults add nothing else."""
    pods = _pods(default_spec)
    assert set(pods) == LARGE_STEPS
    for name, pod in pods.items():
        (volume,) = pod.generic_ephemeral_volume
        assert (volume.mount_path, volume.size) == ("/gcs", configs.KUBEFLOW_STEP_DISK), name
        assert list(volume.access_modes) == ["ReadWriteOnce"] and volume.default_storage_class
        # Not a name of the emptyDirs KFP 2.3+ mounts there: pod volumes merge by name.
        assert volume.volume_name not in ("gcs-scratch", "s3-scratch", "minio-scratch")
        assert not pod.tolerations and not pod.node_selector.labels, name
    # kfp 2.13's own reader splits the two documents as kfp.Client does before an upload.
    loaded = kfp.components.load_component_from_file(str(default_spec))
    assert loaded.pipeline_spec.root.dag.tasks.keys() == _spec(default_spec).root.dag.tasks.keys()
    executors = loaded.platform_spec.platforms["kubernetes"].deployment_spec.executors
    assert set(executors) == {_executor_label(_documents(default_spec)[0], s) for s in LARGE_STEPS}


def test_step_disk_its_storage_class_and_the_trainers_gpu_nodes(tmp_path):
    flags = (
        *("--pipeline-root", "s3://bucket/root", "--step-disk", "250Gi"),
        *("--step-disk-class", "fast-ssd"),
        *("--trainer-toleration", "nvidia.com/gpu=present:NoSchedule"),
        *("--trainer-toleration", "dedicated:NoExecute"),
        *("--trainer-node-selector", "cloud.google.com/gke-accelerator=nvidia-l4"),
    )
    pods = _pods(_compile(tmp_path, *flags))
    assert set(pods) == LARGE_STEPS
    for name, pod in pods.items():
        (volume,) = pod.generic_ephemeral_volume
        assert (volume.mount_path, volume.size) == ("/s3", "250Gi"), name
        assert volume.storage_class_name == "fast-ssd" and not volume.default_storage_class
        assert bool(pod.tolerations) == bool(pod.node_selector.labels) == (name == "Trainer")
    trainer = pods["Trainer"]
    assert [json_format.MessageToDict(t) for t in trainer.tolerations] == [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"},
    ]
    assert dict(trainer.node_selector.labels) == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    # --step-disk 0 (Kubeflow Pipelines 2.0, 2.1), no Trainer settings, no secret: one document.
    flags = ("--pipeline-root", "minio://mlpipeline/v2/artifacts", "--step-disk", "0")
    flags += ("--s3-credentials-secret", "none")
    assert len(_documents(_compile(tmp_path, *flags, filename="no-disk.yaml"))) == 1


def test_trainer_resources_training_and_beam_flags(tmp_path):
    beam = "--runner=DataflowRunner --project=p --region=europe-west4 --temp_location=gs://b/tmp"
    spec = _spec(
        _compile(
            tmp_path,
            *("--gpus", "2", "--gpu-type", "NVIDIA_L4"),
            *("--trainer-cpu", "12", "--trainer-memory", "85Gi"),
            *("--variant", "swin_s", "--epochs", "3", "--clip-frames", "16", "--split", "2"),
            *("--pipeline-root", "gs://bucket/root", "--data-root", "gs://bucket/videos"),
            "--beam-pipeline-args=" + beam,
        )
    )
    trainer = _container(spec, "Trainer").resources
    assert (trainer.accelerator.type, trainer.accelerator.count) == ("NVIDIA_L4", 2)
    assert (trainer.resource_cpu_limit, trainer.resource_memory_request) == ("12", "85Gi")
    options = _train_options(spec)
    assert (options.gpus, options.variant, options.epochs, options.clip_frames) == (
        2,
        "swin_s",
        3,
        16,
    )
    example_gen = spec.root.dag.tasks["VideoExampleGen"].inputs.parameters
    assert example_gen["ucf_split"].runtime_value.constant.number_value == 2
    assert example_gen["input_base"].runtime_value.constant.string_value == "gs://bucket/videos"
    for name in BEAM_STEPS:
        assert beam.split() == _container(spec, name).args[-4:], name
    # ExampleGen's driver (run before KFP's cache check) gets them too.
    assert beam.split() == _container(spec, "VideoExampleGen").lifecycle.pre_cache_check.args[-4:]
    cpu_only = _spec(_compile(tmp_path, "--gpus", "0", filename="cpu.yaml"))
    assert not _container(cpu_only, "Trainer").resources.HasField("accelerator")
    assert _train_options(cpu_only).gpus == 0


def test_json_output_is_a_vertex_pipeline_job(tmp_path):
    flags = ("--pipeline-root", "gs://b/r", "--schema", configs.UCF101_SCHEMA)
    job = json.loads(_compile(tmp_path, *flags, filename="job.json").read_text())
    parsed = json_format.ParseDict(job, pipeline_spec_pb2.PipelineJob())
    assert parsed.runtime_config.gcs_output_directory == "gs://b/r"
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert "Trainer" in tasks and "SchemaGen" not in tasks
    # The curated schema as the image sees it: relative to its WORKDIR, the repository root.
    schema = tasks["ImportSchemaGen"]["inputs"]["parameters"]["schema_file"]
    assert schema["runtimeValue"]["constant"] == "pipeline/schema/ucf101/schema.pbtxt"


@pytest.mark.parametrize("command", ["compile", "submit", "schedule"])
def test_help_documents_every_setting(command, capsys):
    with pytest.raises(SystemExit):
        kubeflow_runner.main([command, "--help"])
    text = capsys.readouterr().out
    for flag in ("--image", "--pipeline-root", "--data-root", "--serving-dir", "--split"):
        assert flag in text
    for flag in ("--variant", "--pretrained", "--epochs", "--beam-pipeline-args", "--gpus"):
        assert flag in text
    for flag in ("--gpu-type", "--trainer-cpu", "--trainer-memory", "--output", "--workers"):
        assert flag in text
    for flag in ("--step-disk", "--step-disk-class", "--trainer-toleration"):
        assert flag in text
    assert ("--endpoint" in text) == (command != "compile")
    assert ("--cron" in text) == (command == "schedule")


def test_submit_and_schedule_need_an_endpoint(tmp_path, capsys):
    with pytest.raises(SystemExit):
        kubeflow_runner.main(["submit", "--output", str(tmp_path / "p.yaml")])
    with pytest.raises(SystemExit):
        kubeflow_runner.main(["schedule", "--endpoint", "http://127.0.0.1:1"])
    assert "--cron" in capsys.readouterr().err


class _KfpApi(http.server.BaseHTTPRequestHandler):
    """The few KFP v2beta1 REST calls kfp.Client makes to create a run or a recurring run."""

    requests: list = []

    def _reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self.requests.append(("GET", self.path, None))
        self._reply({"multi_user": False} if "healthz" in self.path else {})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.requests.append(("POST", self.path, body))
        if self.path.endswith("/experiments"):
            self._reply({"experiment_id": "experiment-1", **body})
        elif self.path.endswith("/recurringruns"):
            self._reply({"recurring_run_id": "recurring-1", **body})
        else:
            self._reply({"run_id": "run-1", **body})

    def log_message(self, *args):
        pass


@pytest.fixture
def kfp_api():
    _KfpApi.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KfpApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", _KfpApi.requests
    server.shutdown()


def _posted(requests, suffix):
    (body,) = [b for method, path, b in requests if method == "POST" and path.endswith(suffix)]
    return body


def test_submit_creates_a_run_with_the_spec_and_its_root(tmp_path, kfp_api, capsys):
    endpoint, requests = kfp_api
    _compile(tmp_path, "--endpoint", endpoint, "--pipeline-root", "gs://b/r", command="submit")
    run = _posted(requests, "/runs")
    # kfp.Client sends both documents: {"pipeline_spec": ..., "platform_spec": ...}.
    tasks = run["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]
    assert set(tasks) >= {"Trainer", "Pusher"}
    platform = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]
    assert "Trainer_executor" in platform["deploymentSpec"]["executors"]
    assert run["runtime_config"]["pipeline_root"] == "gs://b/r"
    assert run["experiment_id"] == "experiment-1"
    # The spec's own caching options travel as compiled (enable_caching=None).
    assert {n for n, t in tasks.items() if not t["cachingOptions"].get("enableCache")} == {
        "NewSpans",
        "TrainingPlan",
    }
    assert "created run run-1" in capsys.readouterr().out


def test_schedule_creates_a_recurring_run(tmp_path, kfp_api, capsys):
    endpoint, requests = kfp_api
    _compile(tmp_path, "--endpoint", endpoint, "--cron", "0 0 3 * * 0", command="schedule")
    job = _posted(requests, "/recurringruns")
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 0"
    assert job["max_concurrency"] in (1, "1") and job["no_catchup"] is True
    assert job["runtime_config"]["pipeline_root"] == configs.KUBEFLOW_PIPELINE_ROOT
    assert "Trainer" in job["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]
    assert "platforms" in job["pipeline_spec"]["platform_spec"]
    assert "created recurring run recurring-1" in capsys.readouterr().out


def test_several_machines_train_as_a_vertex_custom_job(tmp_path):
    flags = ("--vertex-project", "p", "--vertex-region", "europe-west4", "--workers", "4")
    spec = _spec(_compile(tmp_path, *flags, "--gpus", "2", "--gpu-type", "NVIDIA_L4"))
    trainer = _container(spec, "Trainer")
    assert "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor" in (
        trainer.args
    )
    assert not trainer.resources.HasField("accelerator")  # the pod only waits for the job
    config = _trainer_settings(spec)
    assert config["ai_platform_enable_vertex"] is True
    assert config["ai_platform_vertex_region"] == "europe-west4"
    job = config["ai_platform_training_args"]
    assert job["project"] == "p"
    assert [pool["replica_count"] for pool in job["worker_pool_specs"]] == [1, 3]  # chief, workers
    for pool in job["worker_pool_specs"]:
        assert pool["container_spec"]["image_uri"] == configs.KUBEFLOW_IMAGE
        assert pool["machine_spec"]["accelerator_type"] == "NVIDIA_L4"
        assert pool["machine_spec"]["accelerator_count"] == 2
    assert TrainOptions.from_json(config[OPTIONS_KEY]).gpus == 2  # each worker checks its GPUs


def test_several_machines_on_kubeflow_train_as_a_tfjob(tmp_path):
    gpu_nodes = ("--trainer-toleration", "nvidia.com/gpu:NoSchedule")
    gpu_nodes += ("--trainer-node-selector", "pool=gpu")
    path = _compile(
        tmp_path, "--workers", "3", "--gpus", "2", "--trainer-memory", "64Gi", *gpu_nodes
    )
    spec = _spec(path)
    trainer = _container(spec, "Trainer")
    assert "components.tfjob_trainer.TFJobExecutor" in trainer.args
    assert not trainer.HasField("resources")  # the pod only launches the TFJob and waits
    config = _trainer_settings(spec)
    assert config["tfjob"] == {
        "image": configs.KUBEFLOW_IMAGE,
        "workers": 3,
        "gpus": 2,
        "gpu_type": configs.KUBEFLOW_GPU_TYPE,
        "cpu": str(configs.KUBEFLOW_TRAINER_CPU),
        "memory": "64Gi",
        # The replicas go to GPU nodes; the launcher pod, which needs no GPU, does not.
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "node_selector": {"pool": "gpu"},
    }
    assert TrainOptions.from_json(config[OPTIONS_KEY]).gpus == 2  # each replica checks its GPUs
    launcher = _pods(path)["Trainer"]
    assert launcher.generic_ephemeral_volume  # it downloads the examples all the same
    assert not launcher.tolerations and not launcher.node_selector.labels


def test_machine_settings_are_checked(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _compile(tmp_path, "--workers", "0")
    assert "--workers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _compile(tmp_path, "--vertex-project", "p")  # nvidia.com/gpu is not a Vertex type
    assert "NVIDIA_L4" in capsys.readouterr().err
    kubernetes_only = ("--trainer-toleration", "nvidia.com/gpu:NoSchedule")
    vertex = ("--vertex-project", "p", "--gpu-type", "NVIDIA_L4", "--workers", "2")
    for flags, filename in [(vertex, "p.yaml"), ((), "job.json")]:
        with pytest.raises(SystemExit):
            _compile(tmp_path, *flags, *kubernetes_only, filename=filename)
        assert "Vertex AI picks machines by --machine-type" in capsys.readouterr().err
    for flag, value in [("--step-disk", "lots"), ("--trainer-toleration", "gpu:Sometimes")]:
        with pytest.raises(SystemExit):
            _compile(tmp_path, flag, value)
        assert repr(value) in capsys.readouterr().err


def test_minio_root_with_s3_data_and_serving(tmp_path):
    """KFP's own MinIO root: every step gets the S3 endpoint for the videos and the serving dir
    (s3://, as KServe names MinIO's buckets); a TFJob Trainer, whose replicas read the artifacts
    outside the pod, is refused there before anything runs."""
    flags = ("--pipeline-root", "minio://mlpipeline/v2/artifacts", "--data-root", "s3://v/ucf")
    flags += ("--schema", "pipeline/schema/ucf101/schema.pbtxt")
    path = _compile(tmp_path, *flags, "--s3-endpoint", "http://minio-service.kubeflow:9000")
    spec, pods = _spec(path), _pods(path)
    for name in spec.root.dag.tasks:
        if name != "SchemaGen":  # ImportSchemaGen is an importer: no container
            env = {e.name: e.value for e in _container(spec, name).env}
            assert env == {"AWS_ENDPOINT_URL": "http://minio-service.kubeflow:9000"}, name
            # Credentials: KFP's own MinIO secret, as environment variables (never in the spec).
            (secret,) = pods[name].secret_as_env
            assert secret.secret_name == "mlpipeline-minio-artifact"
            assert {(k.secret_key, k.env_var) for k in secret.key_to_env} == {
                ("accesskey", "AWS_ACCESS_KEY_ID"),
                ("secretkey", "AWS_SECRET_ACCESS_KEY"),
            }
    assert "SchemaGen" not in pods
    own = _pods(
        _compile(tmp_path, *flags, "--s3-credentials-secret", "s3:id:key", filename="o.yaml")
    )
    assert own["Pusher"].secret_as_env[0].key_to_env[0].secret_key == "id"
    for choice in ("none", None):  # no secret: an AWS role (IRSA), or a gs:// root's default
        extra = ("--s3-credentials-secret", choice) if choice else ("--pipeline-root", "gs://b/r")
        other = _pods(_compile(tmp_path, *flags, *extra, filename="n.yaml"))
        assert not any(config.secret_as_env for config in other.values())
    pusher = spec.root.dag.tasks["Pusher"].inputs.parameters["push_destination"]
    assert "s3://mlpipeline/v2/artifacts/serving/video_swin" in (
        pusher.runtime_value.constant.string_value
    )
    with pytest.raises(ValueError, match="the Trainer's replicas"):
        _compile(tmp_path, *flags, "--workers", "2", filename="tfjob.yaml")
