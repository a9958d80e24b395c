"""kubeflow_runner.py: compile (the spec and its Kubernetes platform document, parsed with kfp's
and kfp-kubernetes' protos), submit and schedule (against a KFP API stand-in on loopback). The
compiled spec is run for real in test_kubeflow_run.py."""

import http.server
import json
import os
import urllib.parse

import kfp.client
import kfp.components
import pytest
import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s
from kfp.pipeline_spec import pipeline_spec_pb2

import kubeflow_client
import kubeflow_runner
from components import tfjob_trainer
from model.options import OPTIONS_KEY, TrainOptions
from pipeline import configs
from pipeline.pipeline import create_pipeline
from tests.helpers import LoopbackServer

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
    # Dataflow's workers run the steps' image (else TFX would ship them an sdist of itself).
    given = [*beam.split(), f"--sdk_container_image={configs.KUBEFLOW_IMAGE}"]
    for name in BEAM_STEPS:
        args = list(_container(spec, name).args)  # the teardown plugin may follow them
        assert given == args[args.index(beam.split()[0]) :][:5], name
    # ExampleGen's driver (run before KFP's cache check) gets them too.
    assert given == _container(spec, "VideoExampleGen").lifecycle.pre_cache_check.args[-5:]
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
    for flag in ("--tfjob-service-account", "--tfjob-deadline-hours"):
        assert flag in text
    for flag in ("--namespace", "--token", "--token-file", "--cookies", "KF_PIPELINES_TOKEN"):
        assert (flag in text) == (command != "compile")
    assert ("--endpoint" in text) == (command != "compile")
    assert ("--cron" in text) == (command == "schedule")


def test_submit_and_schedule_need_an_endpoint(tmp_path, capsys):
    with pytest.raises(SystemExit):
        kubeflow_runner.main(["submit", "--output", str(tmp_path / "p.yaml")])
    with pytest.raises(SystemExit):
        kubeflow_runner.main(["schedule", "--endpoint", "http://127.0.0.1:1"])
    assert "--cron" in capsys.readouterr().err


# ---------------------------------------------------------------- a KFP API stand-in

# grpc-gateway's HTTP status for each gRPC code the API server answers with here.
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5}
SESSION_COOKIES = {"oauth2-proxy": "oauth2_proxy_kubeflow", "authservice": "authservice_session"}


class _Refused(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


class KfpApiStandIn(LoopbackServer):
    """Kubeflow Pipelines' API server on 127.0.0.1: the v2beta1 REST calls kfp.Client 2.13 makes
    to create a run or a recurring run, behind Kubeflow's gateway. Written from kubeflow/pipelines
    2.17.0 (the same since 2.0.0):
    - backend/src/apiserver/auth: the user is the identity header the gateway sets, else the user
      of a bearer token Kubernetes' TokenReview accepts for the audience pipelines.kubeflow.org
      (`tokens`: token -> user); neither: 401 "there is no user identity header".
    - resource/resource_manager.go IsAuthorized, in multi-user mode only: a SubjectAccessReview
      in the namespace (`members`: user -> its namespaces); refused: 403 "User ... is not
      authorized".
    - server/experiment_server.go, run_server.go: an experiment needs a namespace in multi-user
      mode (400; single-user mode drops it); runs and recurring runs take their experiment's.
    - Errors as grpc-gateway v2 writes them, {"code", "message", "details"}, with the HTTP status
      of the gRPC code. Healthz answers anyone who reaches it.
    `gateway`, Kubeflow's login in front of the API: "oauth2-proxy" (Kubeflow 1.9+) takes the
    session cookie oauth2_proxy_kubeflow (`sessions`: cookie value -> user) or a bearer token,
    else answers API paths 401 (its api_routes); "authservice" (oidc-authservice, up to 1.8) takes
    authservice_session, else redirects to Dex's login page. Either sets the identity header
    itself, whatever the client sent.
    """

    def __init__(self, multi_user=False, tokens=None, sessions=None, members=None, gateway=None):
        self.multi_user, self.gateway = multi_user, gateway
        self.tokens, self.sessions, self.members = tokens or {}, sessions or {}, members or {}
        self.requests, self.experiments = [], {}
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                stand_in._serve(self, None)

            def do_POST(self):  # noqa: N802
                stand_in._serve(
                    self, json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                )

            def log_message(self, *args):
                pass

        self._listen(Handler)

    def posted(self, path):
        return [body for method, p, body, _ in self.requests if method == "POST" and p == path]

    @staticmethod
    def _send(handler, status, body, content_type="application/json", location=None):
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        if location:
            handler.send_header("Location", location)
        handler.end_headers()
        handler.wfile.write(data)

    def _serve(self, handler, body):
        url = urllib.parse.urlparse(handler.path)
        headers = {key.lower(): value for key, value in handler.headers.items()}
        self.requests.append((handler.command, url.path, body, headers))
        if url.path.startswith("/dex/"):
            page = "<html><head><title>dex</title></head><body>Log in to Your Account</body></html>"
            return self._send(handler, 200, page, "text/html")
        cookies = dict(
            part.strip().partition("=")[::2] for part in headers.get("cookie", "").split(";")
        )
        authorization = headers.get("authorization", "")
        token = (
            authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None
        )
        identity = None
        if self.gateway:
            identity = self.sessions.get(cookies.get(SESSION_COOKIES[self.gateway]))
            if self.gateway == "oauth2-proxy":
                identity = identity or self.tokens.get(token)
                if not identity:
                    return self._send(handler, 401, "Unauthorized", "text/plain; charset=utf-8")
            elif not identity:
                login = "/dex/auth?client_id=kubeflow-oidc-authservice&response_type=code"
                return self._send(handler, 302, "", "text/html", location=login)
        if url.path == "/apis/v2beta1/healthz":
            return self._send(handler, 200, {"multi_user": self.multi_user, "tag_name": "2.17.0"})
        query = dict(urllib.parse.parse_qsl(url.query))
        try:
            reply = self._api(handler.command, url.path, query, body, identity, token)
        except _Refused as refused:
            code = GRPC_CODES[refused.status]
            status = {"code": code, "message": refused.message, "details": []}
            return self._send(handler, refused.status, status)
        self._send(handler, 200, reply)

    def _user(self, identity, token):
        if identity:
            return identity
        missing = "Request header error: there is no user identity header."
        if token is None:
            errors = f"[{missing}, {missing}]"
        elif token not in self.tokens:
            errors = f"[{missing}, Authentication failure: Review.Status.Authenticated is false. "
            errors += "Error token lookup failed]"
        else:
            return self.tokens[token]
        raise _Refused(
            401,
            f"Failed to check authorization. User identity is empty in the request header: "
            f"Unauthenticated: {errors}",
        )

    def _authorize(self, context, identity, token, namespace, verb, resource):
        if not self.multi_user:
            return
        if not namespace:
            kind = "An experiment" if resource == "experiments" else "A run"
            raise _Refused(
                400,
                f"{context}: Invalid input error: {kind} cannot have an empty "
                "namespace in multi-user mode",
            )
        try:
            user = self._user(identity, token)
        except _Refused as refused:
            raise _Refused(401, f"{context}: {refused.message}") from None
        if namespace not in self.members.get(user, ()):
            attributes = f"&ResourceAttributes{{Namespace:{namespace},Verb:{verb},"
            attributes += f"Group:pipelines.kubeflow.org,Version:v1beta1,Resource:{resource},}}"
            raise _Refused(
                403,
                f"{context}: PermissionDenied: User '{user}' is not authorized with reason:  "
                f"(request: {attributes}): Unauthorized access",
            )

    def _api(self, method, path, query, body, identity, token):
        auth = (identity, token)
        if (method, path) == ("GET", "/apis/v2beta1/experiments"):
            namespace = query.get("namespace", "") if self.multi_user else ""
            context = "List experiments failed: Failed to authorize with API"
            self._authorize(context, *auth, namespace, "list", "experiments")
            (predicate,) = json.loads(query["filter"])["predicates"]
            found = [
                e
                for e in self.experiments.values()
                if (e["namespace"], e["display_name"]) == (namespace, predicate["stringValue"])
            ]
            return {"experiments": found, "total_size": len(found)} if found else {}
        if (method, path) == ("POST", "/apis/v2beta1/experiments"):
            namespace = body.get("namespace", "") if self.multi_user else ""
            context = "Failed to create a experiment: Failed to authorize the request"
            self._authorize(context, *auth, namespace, "create", "experiments")
            experiment_id = f"experiment-{len(self.experiments) + 1}"
            experiment = {**body, "experiment_id": experiment_id, "namespace": namespace}
            self.experiments[experiment_id] = experiment
            return experiment
        if method == "POST" and path in ("/apis/v2beta1/runs", "/apis/v2beta1/recurringruns"):
            resource = path.rsplit("/", 1)[1]
            experiment = self.experiments.get(body.get("experiment_id"))
            if experiment is None:
                raise _Refused(404, f"Failed to fetch namespace for experiment {body}")
            namespace = experiment["namespace"]
            context = "Failed to create a run due to authorization error. Check if you have "
            context += f"write permissions to namespace {namespace}"
            self._authorize(context, *auth, namespace, "create", resource)
            key, value = (
                ("run_id", "run-1") if resource == "runs" else ("recurring_run_id", "recurring-1")
            )
            return {**body, key: value}
        raise _Refused(404, f"no route for {method} {path}")


@pytest.fixture
def kfp_api():
    with KfpApiStandIn() as api:
        yield api.url, api.requests


def _posted(requests, suffix):
    (body,) = [b for method, path, b, _ in requests if method == "POST" and path.endswith(suffix)]
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


ALICE, TOKEN, COOKIE = "alice@example.com", "token-of-alice", "session-of-alice"


@pytest.fixture
def no_kfp_env(monkeypatch, tmp_path):
    """No API settings from this machine: no KF_PIPELINES_* variables, no projected token, not a
    pod."""
    for name in ("ENDPOINT", "NAMESPACE", "TOKEN", "SA_TOKEN_PATH", "COOKIES"):
        monkeypatch.delenv(f"KF_PIPELINES_{name}", raising=False)
    monkeypatch.setattr(kfp.client, "KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(kubeflow_client, "POD_NAMESPACE_FILE", str(tmp_path / "no-namespace"))


def _multi_user(**settings):
    """A multi-user Kubeflow where alice (by token or session) may use namespace team-a."""
    defaults = {"tokens": {TOKEN: ALICE}, "sessions": {COOKIE: ALICE}}
    defaults |= {"members": {ALICE: {"team-a"}}}
    return KfpApiStandIn(multi_user=True, **defaults | settings)


def _send(command, spec, *flags):
    """`submit` or `schedule` of the compiled spec (as main() does after compiling)."""
    flags += ("--cron", "0 0 3 * * 0") if command == "schedule" else ()
    args = kubeflow_runner.parse_args([command, *flags])
    return kubeflow_runner.submit(args, str(spec)), args


def _in_namespace(api, namespace):
    """The one experiment, created in `namespace`, and what was created in it."""
    (experiment,) = api.posted("/apis/v2beta1/experiments")
    assert experiment["namespace"] == namespace
    (created,) = api.posted("/apis/v2beta1/runs") + api.posted("/apis/v2beta1/recurringruns")
    assert created["experiment_id"] == api.experiments["experiment-1"]["experiment_id"]
    return created


def test_submit_and_schedule_on_a_multi_user_kubeflow_with_a_token(
    default_spec, no_kfp_env, monkeypatch, capsys
):
    with _multi_user() as api:
        flags = ("--endpoint", api.url, "--namespace", "team-a", "--token", TOKEN)
        assert _send("submit", default_spec, *flags)[0] == "run-1"
        run = _in_namespace(api, "team-a")
        assert run["runtime_config"]["pipeline_root"] == configs.KUBEFLOW_PIPELINE_ROOT
        # The same from the environment: the token stays out of the process list.
        monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
        monkeypatch.setenv("KF_PIPELINES_NAMESPACE", "team-a")
        monkeypatch.setenv("KF_PIPELINES_ENDPOINT", api.url + "/")
        recurring, args = _send("schedule", default_spec)
        assert recurring == "recurring-1" and args.api.endpoint == api.url
    # The schedule found the experiment the run made, in the namespace, and used it.
    assert len(api.posted("/apis/v2beta1/experiments")) == 1
    (job,) = api.posted("/apis/v2beta1/recurringruns")
    assert job["experiment_id"] == "experiment-1" and job["no_catchup"] is True
    lists = [p for m, p, _, _ in api.requests if m == "GET" and p.endswith("/experiments")]
    assert len(lists) == 2
    for method, path, _, headers in api.requests:
        assert headers.get("authorization") == f"Bearer {TOKEN}", (method, path)
        assert "kubeflow-userid" not in headers  # the gateway's to set, never the client's
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err


@pytest.mark.parametrize("where", ["env", "projected volume"])
def test_submit_from_a_pod_with_its_service_account_token(
    where, default_spec, no_kfp_env, tmp_path, monkeypatch
):
    """In a pod (a notebook, a CI job): the token KFP's projected volume holds, read on every
    request (the kubelet rotates it), and the pod's own namespace; to the API server directly, so
    its TokenReview decides."""
    token_file, namespace_file = tmp_path / "token", tmp_path / "namespace"
    token_file.write_text(TOKEN + "\n")
    namespace_file.write_text("team-a")
    monkeypatch.setattr(kubeflow_client, "POD_NAMESPACE_FILE", str(namespace_file))
    if where == "env":
        monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
    else:
        monkeypatch.setattr(kfp.client, "KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
    with _multi_user() as api:
        run_id, args = _send("submit", default_spec, "--endpoint", api.url)
    assert run_id == "run-1" and args.api.namespace == "team-a"
    assert args.api.credentials.describe() == (
        f"the service account token in {token_file} "
        + ("($KF_PIPELINES_SA_TOKEN_PATH)" if where == "env" else "(the pod's projected volume)")
    )
    _in_namespace(api, "team-a")
    assert {h.get("authorization") for *_, h in api.requests} == {f"Bearer {TOKEN}"}


@pytest.mark.parametrize("gateway", ["oauth2-proxy", "authservice"])
def test_submit_with_a_browser_session_cookie(gateway, default_spec, no_kfp_env, monkeypatch):
    """Behind Kubeflow's login: the session cookie of a logged-in browser, which the gateway
    turns into the identity header; from --cookies or the environment."""
    cookies = f"{SESSION_COOKIES[gateway]}={COOKIE}; _ga=GA1.2.3"
    with _multi_user(gateway=gateway) as api:
        if gateway == "oauth2-proxy":
            flags = ("--cookies", cookies)
        else:
            monkeypatch.setenv("KF_PIPELINES_COOKIES", cookies)
            flags = ()
        _, args = _send(
            "submit", default_spec, "--endpoint", api.url, "--namespace", "team-a", *flags
        )
    _in_namespace(api, "team-a")
    source = "--cookies" if flags else "$KF_PIPELINES_COOKIES"
    assert args.api.credentials.describe() == (
        f"the cookies {SESSION_COOKIES[gateway]}, _ga from {source}"
    )
    for *_, headers in api.requests:
        assert headers["cookie"] == cookies and "authorization" not in headers


def test_refusals_say_what_was_sent_and_what_to_try(default_spec, no_kfp_env, capsys):
    def refused(api, *flags):
        with pytest.raises(SystemExit) as failure:
            _send("submit", default_spec, "--endpoint", api.url, *flags)
        message = str(failure.value.code)
        assert message.startswith("submit: ") and "Traceback" not in message
        for secret in (TOKEN, COOKIE, "wrong-token", "old-session"):
            assert secret not in message + capsys.readouterr().out
        assert not api.posted("/apis/v2beta1/runs")
        return message

    with _multi_user(gateway="oauth2-proxy") as api:  # Kubeflow 1.9+, nothing sent
        message = refused(api, "--namespace", "team-a")
    assert f"the Kubeflow Pipelines API at {api.url} answered 401 Unauthorized" in message
    assert "(sent: no credentials; namespace team-a)" in message
    assert "--token" in message and "--cookies" in message
    with _multi_user(gateway="authservice") as api:  # up to 1.8: a redirect to the login page
        message = refused(api, "--cookies", "authservice_session=old-session")
    assert f"answered with a web page ({api.url}/dex/auth?" in message
    assert "the gateway did not accept the cookies authservice_session from --cookies" in message
    with _multi_user() as api:  # the API server itself: its TokenReview fails
        message = refused(api, "--namespace", "team-a", "--token", "wrong-token")
    assert "answered 401 Unauthorized: List experiments failed" in message
    assert "Review.Status.Authenticated is false" in message
    assert "The bearer token from --token was not accepted" in message
    with _multi_user() as api:  # a known user, someone else's namespace
        message = refused(api, "--namespace", "team-b", "--token", TOKEN)
    assert "403 Forbidden: List experiments failed: Failed to authorize with API: " in message
    assert f"User '{ALICE}' is not authorized" in message
    assert "may not use namespace team-b" in message and "contributor" in message
    with _multi_user() as api:  # multi-user, yet no namespace (and not in a pod)
        message = refused(api, "--token", TOKEN)
    assert "is multi-user: name the profile namespace to run in with --namespace" in message
    with KfpApiStandIn() as api:
        pass  # stopped: nothing listens there any more
    message = refused(api, "--token", TOKEN)
    assert f"cannot reach the Kubeflow Pipelines API at {api.url}: NewConnectionError" in message
    # Caught before compiling: a token file that is not there, a cookie that is not one.
    endpoint = ("--endpoint", api.url)
    for flags, expected in [
        ((*endpoint, "--token-file", "/nowhere/token"), "--token-file: no token file at /nowhere"),
        ((*endpoint, "--cookies", "old-session"), "--cookies: expected a Cookie header"),
        (("--token", TOKEN), "--endpoint (or $KF_PIPELINES_ENDPOINT) is required"),
    ]:
        with pytest.raises(SystemExit):
            kubeflow_runner.parse_args(["submit", *flags])
        err = capsys.readouterr().err
        assert expected in err and "old-session" not in err


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
    tfjob = ("--tfjob-service-account", "trainer", "--tfjob-deadline-hours", "6")
    path = _compile(
        tmp_path, "--workers", "3", "--gpus", "2", "--trainer-memory", "64Gi", *gpu_nodes, *tfjob
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
        "deadline_seconds": 6 * 3600,
        "service_account": "trainer",
    }
    assert TrainOptions.from_json(config[OPTIONS_KEY]).gpus == 2  # each replica checks its GPUs
    # What the Trainer's executor makes of it: every replica's pod on the GPU nodes, as trainer.
    settings = tfjob_trainer.TFJobSettings.from_custom_config(config)
    manifest = tfjob_trainer.tfjob_manifest("job", "team-a", settings, ["python"], None)
    assert manifest["spec"]["runPolicy"]["activeDeadlineSeconds"] == 6 * 3600
    for replicas in manifest["spec"]["tfReplicaSpecs"].values():
        pod = replicas["template"]["spec"]
        assert pod["tolerations"] == config["tfjob"]["tolerations"]
        assert pod["nodeSelector"] == {"pool": "gpu"} and pod["serviceAccountName"] == "trainer"
    # By default: the deadline from configs, the replicas as the steps' own service account.
    default = _trainer_settings(_spec(_compile(tmp_path, "--workers", "2", filename="d.yaml")))[
        "tfjob"
    ]
    assert default["deadline_seconds"] == configs.KUBEFLOW_TFJOB_DEADLINE_HOURS * 3600
    assert "service_account" not in default
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
    with pytest.raises(SystemExit):
        _compile(tmp_path, "--tfjob-service-account", "trainer")  # one machine: no TFJob
    assert "--tfjob-service-account is for a TFJob" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _compile(tmp_path, "--workers", "2", "--tfjob-deadline-hours", "0")
    assert "--tfjob-deadline-hours 0.0: a positive duration" in capsys.readouterr().err
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
