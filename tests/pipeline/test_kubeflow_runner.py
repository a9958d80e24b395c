"""kubeflow_runner.py: compile (the spec, parsed with kfp's protos), submit and schedule (against
a KFP API stand-in on loopback). The compiled spec is run for real in test_kubeflow_run.py."""

import http.server
import json
import threading

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

import kubeflow_runner
from model.options import OPTIONS_KEY, TrainOptions
from pipeline import configs
from pipeline.pipeline import create_pipeline

BEAM_STEPS = ("VideoExampleGen", "StatisticsGen", "Transform", "Evaluator")


def _compile(tmp_path, *flags, filename="pipeline.yaml", command="compile"):
    out = tmp_path / filename
    kubeflow_runner.main([command, "--output", str(out), *flags])
    return out


def _spec(path) -> pipeline_spec_pb2.PipelineSpec:
    return json_format.ParseDict(yaml.safe_load(path.read_text()), pipeline_spec_pb2.PipelineSpec())


def _container(spec, task):
    label = spec.components[spec.root.dag.tasks[task].component_ref.name].executor_label
    executor = spec.deployment_spec.fields["executors"].struct_value.fields[label]
    container = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec()
    json_format.ParseDict(
        json_format.MessageToDict(executor.struct_value.fields["container"].struct_value),
        container,
    )
    return container


def _train_options(spec) -> TrainOptions:
    params = spec.root.dag.tasks["Trainer"].inputs.parameters
    custom_config = json.loads(params["custom_config"].runtime_value.constant.string_value)
    return TrainOptions.from_json(custom_config[OPTIONS_KEY])


def test_compile_with_no_flags_writes_the_local_pipeline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kubeflow_runner.main(["compile"])  # defaults from pipeline/configs.py, output in the cwd
    spec = _spec(tmp_path / f"{configs.PIPELINE_NAME}.yaml")
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
    # Kubeflow Pipelines' backend runs containers (no resolvers) and reads parameter constants.
    for name, task in tasks.items():
        assert _container(spec, name).image == configs.KUBEFLOW_IMAGE, name
        assert _container(spec, name).command == kubeflow_runner.ENTRYPOINT, name
        for param in task.inputs.parameters.values():
            assert param.runtime_value.HasField("constant"), name
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
        args = _container(spec, name).args
        assert beam.split() == args[args.index(beam.split()[0]) :][:4], name
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
    assert set(run["pipeline_spec"]["root"]["dag"]["tasks"]) >= {"Trainer", "Pusher"}
    assert run["runtime_config"]["pipeline_root"] == "gs://b/r"
    assert run["experiment_id"] == "experiment-1"
    assert all(
        task.get("cachingOptions", {}).get("enableCache") in (None, False)
        for task in run["pipeline_spec"]["root"]["dag"]["tasks"].values()
    )
    assert "created run run-1" in capsys.readouterr().out


def test_schedule_creates_a_recurring_run(tmp_path, kfp_api, capsys):
    endpoint, requests = kfp_api
    _compile(tmp_path, "--endpoint", endpoint, "--cron", "0 0 3 * * 0", command="schedule")
    job = _posted(requests, "/recurringruns")
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 0"
    assert job["max_concurrency"] in (1, "1") and job["no_catchup"] is True
    assert job["runtime_config"]["pipeline_root"] == configs.KUBEFLOW_PIPELINE_ROOT
    assert "Trainer" in job["pipeline_spec"]["root"]["dag"]["tasks"]
    assert "created recurring run recurring-1" in capsys.readouterr().out


def test_several_machines_train_as_a_vertex_custom_job(tmp_path):
    flags = ("--vertex-project", "p", "--vertex-region", "europe-west4", "--workers", "4")
    spec = _spec(_compile(tmp_path, *flags, "--gpus", "2", "--gpu-type", "NVIDIA_L4"))
    trainer = _container(spec, "Trainer")
    assert "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor" in (
        trainer.args
    )
    assert not trainer.resources.HasField("accelerator")  # the pod only waits for the job
    params = spec.root.dag.tasks["Trainer"].inputs.parameters
    config = json.loads(params["custom_config"].runtime_value.constant.string_value)
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
    spec = _spec(_compile(tmp_path, "--workers", "3", "--gpus", "2", "--trainer-memory", "64Gi"))
    trainer = _container(spec, "Trainer")
    assert "components.tfjob_trainer.TFJobExecutor" in trainer.args
    assert not trainer.HasField("resources")  # the pod only launches the TFJob and waits
    params = spec.root.dag.tasks["Trainer"].inputs.parameters
    config = json.loads(params["custom_config"].runtime_value.constant.string_value)
    assert config["tfjob"] == {
        "image": configs.KUBEFLOW_IMAGE,
        "workers": 3,
        "gpus": 2,
        "gpu_type": configs.KUBEFLOW_GPU_TYPE,
        "cpu": str(configs.KUBEFLOW_TRAINER_CPU),
        "memory": "64Gi",
    }
    assert TrainOptions.from_json(config[OPTIONS_KEY]).gpus == 2  # each replica checks its GPUs


def test_machine_settings_are_checked(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _compile(tmp_path, "--workers", "0")
    assert "--workers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _compile(tmp_path, "--vertex-project", "p")  # nvidia.com/gpu is not a Vertex type
    assert "NVIDIA_L4" in capsys.readouterr().err
