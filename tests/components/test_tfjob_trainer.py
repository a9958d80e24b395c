"""components/tfjob_trainer.py: the TFJob manifest; the executor against a stand-in of the
Kubernetes API on 127.0.0.1 (TFJob create and get only); and a pipeline whose Trainer is the TFJob
Trainer, where the stand-in plays the Training Operator: it runs the manifest's replicas as local
processes with the TF_CONFIG the operator sets, so the replicas' command really trains."""

import base64
import glob
import http.server
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse

import pytest
import yaml
from tfx.types import artifact_utils, standard_artifacts

from components import tfjob_trainer as tj
from model.options import OPTIONS_KEY
from tests.helpers import LoopbackServer, free_ports, tiny_train_options

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TFJOBS = re.compile(r"^/apis/kubeflow\.org/v1/namespaces/([^/]+)/tfjobs(?:/([^/?]+))?")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
VERBS = {"POST": "create", "GET": "get", "DELETE": "delete"}


# ---------------------------------------------------------------- a Kubernetes API stand-in


def _condition(kind, reason="", message=""):
    return {"type": kind, "status": "True", "reason": reason, "message": message}


def _role_rules():
    """The rules deploy/tfjob-rbac.yaml grants the launcher pod."""
    with open(os.path.join(REPO, "deploy", "tfjob-rbac.yaml")) as f:
        (role,) = [d for d in yaml.safe_load_all(f) if d["kind"] == "Role"]
    return role["rules"]


def _allowed(rules, group, resource, verb):
    return any(
        group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        for rule in rules
    )


def _pod(job, kind, index, phase, **status):
    """A replica's pod as the Training Operator names and labels it (pkg/apis/kubeflow.org/v1)."""
    return {
        "metadata": {
            "name": f"{job['metadata']['name']}-{kind.lower()}-{index}",
            "labels": {
                tj.JOB_LABEL: job["metadata"]["name"],
                "training.kubeflow.org/replica-type": kind.lower(),
                "training.kubeflow.org/replica-index": str(index),
            },
        },
        "status": {"phase": phase, **status},
    }


def unschedulable(job):
    """Every replica Pending: no node has the GPUs (the scheduler's PodScheduled condition)."""
    nodes = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are "
    nodes += "available: 3 No preemption victims found for incoming pod."
    scheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
    return [
        _pod(job, kind, index, "Pending", conditions=[{**scheduled, "message": nodes}])
        for kind, spec in job["spec"]["tfReplicaSpecs"].items()
        for index in range(spec["replicas"])
    ]


class KubeStandIn(LoopbackServer):
    """The paths of a Kubernetes API server on 127.0.0.1 that the TFJob Trainer uses: TFJob
    create, get and delete, and the list of a job's pods; each allowed only as far as the Role
    in deploy/tfjob-rbac.yaml (`rules`) lets the launcher pod, else 403 as RBAC answers.

    It plays the Training Operator (kubeflow/training-operator v1.9.0): `statuses` are what
    successive GETs report (the last one repeats) and `pods(job)` its replicas' pods; without
    statuses each replica of a created TFJob runs as a local process (the container's command,
    `python` being this interpreter, the repository the image's WORKDIR) with the operator's
    TF_CONFIG, its output in `log_dir`/<pod>.log, and status and pods follow the processes. A
    job's runPolicy.activeDeadlineSeconds, counted from its creation, fails it and removes its
    pods as the operator does (pkg/controller.v1/common/job.go), unless enforce_deadline=False.
    """

    def __init__(
        self,
        statuses=None,
        log_dir=None,
        deadline_s=600,
        pods=None,
        enforce_deadline=True,
        rules=None,
    ):
        self.statuses, self.log_dir, self.deadline = statuses, log_dir, time.time() + deadline_s
        self.pods, self.enforce_deadline = pods, enforce_deadline
        self.rules = _role_rules() if rules is None else rules
        self.created, self.deleted, self.gets, self.replicas = [], [], 0, {}
        self.born = {}
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self, body=None):
                code, reply = stand_in._handle(self.command, self.path, body)
                data = json.dumps(reply).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802
                self._serve(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

            do_GET = do_DELETE = _serve  # noqa: N815

            def log_message(self, *args):
                pass

        self._listen(Handler)

    def __exit__(self, *exc):
        super().__exit__(*exc)
        for proc, log in self.replicas.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            log.close()

    def _handle(self, method, path, body):
        url = urllib.parse.urlparse(path)
        pods, tfjobs = PODS.match(url.path), TFJOBS.match(url.path)
        if pods and method == "GET":
            namespace, group, resource, verb = pods.group(1), "", "pods", "list"
        elif tfjobs and (method == "POST") != bool(tfjobs.group(2)):
            namespace, group, resource = tfjobs.group(1), "kubeflow.org", "tfjobs"
            verb = VERBS[method]
        else:
            return 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
        if not _allowed(self.rules, group, resource, verb):
            what = f"{resource}.{group}" if group else resource
            message = (
                f'{what} is forbidden: User "system:serviceaccount:{namespace}:pipeline-runner" '
                f'cannot {verb} resource "{resource}" in API group "{group}" in the namespace '
                f'"{namespace}"'
            )
            return 403, {"kind": "Status", "code": 403, "reason": "Forbidden", "message": message}
        jobs = {(ns, b["metadata"]["name"]): b for ns, b in self.created}
        if pods:
            selector = dict(urllib.parse.parse_qsl(url.query))["labelSelector"]
            job = jobs.get((namespace, selector.removeprefix(f"{tj.JOB_LABEL}=")))
            return 200, {"kind": "PodList", "items": self._pods(job) if job else []}
        if method == "POST":
            self.created.append((namespace, body))
            self.born[body["metadata"]["name"]] = time.time()
            if self.statuses is None:
                self._start(body)
            return 201, body
        job = jobs.get(tfjobs.groups())
        if job is None:
            return 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
        if method == "DELETE":
            self.deleted.append(job["metadata"]["name"])
            return 200, {"kind": "Status", "status": "Success"}
        self.gets += 1
        return 200, {**job, "status": self._status(job)}

    def _start(self, job):
        name, specs = job["metadata"]["name"], job["spec"]["tfReplicaSpecs"]
        ports = iter(free_ports(sum(s["replicas"] for s in specs.values())))
        cluster = {
            kind.lower(): [f"127.0.0.1:{next(ports)}" for _ in range(spec["replicas"])]
            for kind, spec in specs.items()
        }
        for kind, spec in specs.items():
            (container,) = spec["template"]["spec"]["containers"]
            assert container["name"] == "tensorflow" and container["command"][0] == "python"
            for index in range(spec["replicas"]):
                task = {"type": kind.lower(), "index": index}
                env = dict(os.environ, **{e["name"]: e["value"] for e in container["env"]})
                env["PYTHONPATH"] = REPO
                env["TF_CONFIG"] = json.dumps(
                    {"cluster": cluster, "task": task, "environment": "cloud"}
                )
                pod = f"{name}-{kind.lower()}-{index}"
                log = open(os.path.join(self.log_dir, f"{pod}.log"), "w")  # noqa: SIM115
                proc = subprocess.Popen(
                    [sys.executable, *container["command"][1:]],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                self.replicas[pod] = (proc, log)

    def _past_deadline(self, job):
        deadline = job["spec"]["runPolicy"].get("activeDeadlineSeconds")
        born = self.born[job["metadata"]["name"]]
        return self.enforce_deadline and deadline and time.time() - born >= deadline

    def _pods(self, job):
        if self._past_deadline(job):  # the operator deleted the running and pending ones
            return []
        if self.statuses is not None:
            return self.pods(job) if self.pods else []
        phases = {None: "Running", 0: "Succeeded"}
        return [
            {
                "metadata": {"name": pod},
                "status": {"phase": phases.get(proc.poll(), "Failed")},
            }
            for pod, (proc, _) in self.replicas.items()
        ]

    def _status(self, job):
        if self._past_deadline(job):
            for proc, _ in self.replicas.values():
                proc.kill()
            message = f"Job {job['metadata']['name']} has failed because it was active longer "
            message += "than specified deadline"
            failed = [_condition("Created", "TFJobCreated"), _condition("Failed", "TFJobFailed")]
            failed[-1]["message"] = message
            return {"conditions": failed}
        if self.statuses is not None:
            return self.statuses[min(self.gets - 1, len(self.statuses) - 1)]
        if time.time() > self.deadline:  # a hung replica fails the job instead of the test run
            for proc, _ in self.replicas.values():
                proc.kill()
        codes = {pod: proc.poll() for pod, (proc, _) in self.replicas.items()}
        conditions = [_condition("Created", "TFJobCreated")]
        failed = [pod for pod, code in codes.items() if code not in (None, 0)]
        if failed:
            for proc, _ in self.replicas.values():  # cleanPodPolicy Running: the rest go
                proc.kill()
                proc.wait()
            conditions.append(_condition("Failed", "TFJobFailed", f"{failed} failed"))
        elif all(code == 0 for code in codes.values()):
            conditions.append(_condition("Succeeded", "TFJobSucceeded"))
        else:
            conditions.append(_condition("Running", "TFJobRunning"))
        active = sum(code is None for code in codes.values())
        return {"conditions": conditions, "replicaStatuses": {"All": {"active": active}}}


# ---------------------------------------------------------------- manifest and executor


@pytest.fixture(autouse=True)
def not_in_a_pod(tmp_path, monkeypatch):
    """Whatever runs these tests: no service account token or namespace of a pod."""
    monkeypatch.setattr(tj, "SERVICE_ACCOUNT_DIR", str(tmp_path / "not-a-pod"))


def _step(root, settings):
    """Trainer-like inputs, outputs and exec properties (no data: nothing trains)."""
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    graph = standard_artifacts.TransformGraph()
    graph.uri = str(root / "transform_graph")
    model, run = standard_artifacts.Model(), standard_artifacts.ModelRun()
    model.uri, run.uri = str(root / "model"), str(root / "model_run")
    exec_properties = {
        "custom_config": json.dumps({OPTIONS_KEY: "{}", tj.TFJOB_KEY: settings}),
        "run_fn": "model.train.run_fn",
        "train_args": json.dumps({"splits": ["train"]}),
    }
    return (
        {"examples": [examples], "transform_graph": [graph]},
        {"model": [model], "model_run": [run]},
        exec_properties,
    )


def test_manifest_runs_the_trainer_executor_in_every_replica(tmp_path):
    inputs, outputs, props = _step(tmp_path, {"image": "img"})
    settings = tj.TFJobSettings(
        image="registry/video-swin:1",
        workers=3,
        gpus=2,
        gpu_type="amd.com/gpu",
        cpu="8",
        memory="32G",
        service_account="trainer",
        tolerations=[{"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        node_selector={"pool": "mi300"},
    )
    command = tj.replica_command(inputs, outputs, props)
    manifest = tj.tfjob_manifest("job-1", "team-a", settings, command, None)
    assert manifest["apiVersion"] == "kubeflow.org/v1" and manifest["kind"] == "TFJob"
    assert manifest["metadata"]["namespace"] == "team-a"
    specs = manifest["spec"]["tfReplicaSpecs"]
    assert {k: s["replicas"] for k, s in specs.items()} == {"Chief": 1, "Worker": 2}
    for spec in specs.values():
        assert spec["restartPolicy"] == "OnFailure"
        pod = spec["template"]["spec"]
        assert pod["serviceAccountName"] == "trainer"
        assert pod["tolerations"] == settings.tolerations  # the replicas land on GPU nodes
        assert pod["nodeSelector"] == {"pool": "mi300"}
        (container,) = pod["containers"]
        assert container["name"] == "tensorflow" and container["image"] == "registry/video-swin:1"
        assert container["resources"] == {
            "requests": {"cpu": "8", "memory": "32G"},
            "limits": {"memory": "32G", "amd.com/gpu": 2},
        }
        assert {e["name"]: e["value"] for e in container["env"]} == {
            "TF_USE_LEGACY_KERAS": "1",
            "PYTHONPATH": "/pipeline",
        }
        args = container["command"]
        assert args[:3] == ["python", "-m", "tfx.scripts.run_executor"]
        assert args[args.index("--executor_class_path") + 1] == (
            "tfx.components.trainer.executor.GenericExecutor"
        )
        # The replicas get this very step's artifacts and properties back.
        parsed = artifact_utils.parse_artifact_dict(args[args.index("--outputs") + 1])
        assert parsed["model"][0].uri == str(tmp_path / "model")
        assert json.loads(args[args.index("--exec-properties") + 1]) == props
    run_policy = manifest["spec"]["runPolicy"]
    assert run_policy["backoffLimit"] >= 1 and run_policy["cleanPodPolicy"] == "Running"
    assert run_policy["ttlSecondsAfterFinished"] > 0
    assert run_policy["activeDeadlineSeconds"] == 24 * 3600  # the operator enforces it too
    one = tj.tfjob_manifest("job-2", "ns", tj.TFJobSettings(image="i", workers=1), command, None)
    assert list(one["spec"]["tfReplicaSpecs"]) == ["Chief"]
    assert not {"tolerations", "nodeSelector"} & set(
        one["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]
    )
    container = one["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]
    assert "resources" not in container or not container["resources"].get("limits")
    names = {tj.job_name(None, "gs://b/model/7") for _ in range(20)}
    assert len(names) == 20
    assert all(re.fullmatch(r"[a-z][a-z0-9-]{0,38}[a-z0-9]", n) for n in names)
    with pytest.raises(ValueError, match="tfjob"):
        tj.TFJobSettings.from_custom_config({OPTIONS_KEY: "{}"})
    with pytest.raises(ValueError, match="gpu_count"):
        tj.TFJobSettings.from_custom_config(json.dumps({"tfjob": {"image": "i", "gpu_count": 1}}))
    with pytest.raises(ValueError, match="deadline_seconds"):
        tj.TFJobSettings(image="i", deadline_seconds=0)


def _statuses(*conditions):
    return [{"conditions": [*conditions[: i + 1]]} for i in range(len(conditions))]


def test_executor_creates_the_tfjob_and_waits_for_success(tmp_path, caplog):
    settings = {"image": "img:1", "workers": 2, "namespace": "team-a", "poll_seconds": 0.05}
    inputs, outputs, props = _step(tmp_path, settings)
    serving = tmp_path / "model" / "Format-Serving"
    statuses = _statuses(
        _condition("Created", "TFJobCreated"),
        _condition("Running", "TFJobRunning"),
        _condition("Running", "TFJobRunning"),
        _condition("Succeeded", "TFJobSucceeded"),
    )
    caplog.set_level("INFO", logger="absl")  # earlier tests may lower absl verbosity
    with KubeStandIn(statuses) as api:
        executor = tj.TFJobExecutor(api_client=tj.load_api_client(host=api.url))
        with pytest.raises(RuntimeError, match="saved_model.pb is missing"):
            executor.Do(inputs, outputs, props)  # "succeeded" yet the chief wrote nothing here
        # Made beforehand: TFX's GenericExecutor fails a worker that finds it missing.
        assert serving.is_dir() and not os.listdir(serving)
        api.gets = 0
        (serving / "saved_model.pb").write_bytes(b"chief's export")
        executor.Do(inputs, outputs, props)
        assert api.gets == 4  # polled until Succeeded, no further
    (namespace, body), (_, second) = api.created
    assert namespace == "team-a" and body["metadata"]["namespace"] == "team-a"
    assert body["metadata"]["name"] != second["metadata"]["name"]
    command = tj.replica_command(inputs, outputs, props)
    expected = tj.tfjob_manifest(
        body["metadata"]["name"], "team-a", tj.TFJobSettings(**settings), command, None
    )
    assert body == expected
    states = re.findall(rf"TFJob {body['metadata']['name']}: (\w+)", caplog.text)
    assert states == ["Created", "Running", "Succeeded"]  # changes only


def test_a_failed_tfjob_fails_the_step_with_its_reason(tmp_path):
    settings = {"image": "img:1", "namespace": "team-a", "poll_seconds": 0.05}
    inputs, outputs, props = _step(tmp_path, settings)
    message = "TFJob team-a/x has failed because 1 Worker replica(s) failed."
    statuses = _statuses(
        _condition("Created", "TFJobCreated"),
        _condition("Running", "TFJobRunning"),
        _condition("Failed", "TFJobFailed", message),
    )
    out_of_memory = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
    crash_loop = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}

    def pods(job):
        running = {"state": {"running": {}}, "restartCount": 0}
        crashing = {"state": crash_loop, "lastState": out_of_memory, "restartCount": 2}
        return [
            _pod(job, "Chief", 0, "Running", containerStatuses=[running]),
            _pod(job, "Worker", 0, "Running", containerStatuses=[crashing]),
            _pod(job, "Worker", 1, "Failed", containerStatuses=[{"state": out_of_memory}]),
        ]

    with KubeStandIn(statuses, pods=pods) as api:
        executor = tj.TFJobExecutor(api_client=tj.load_api_client(host=api.url))
        with pytest.raises(RuntimeError) as failure:
            executor.Do(inputs, outputs, props)
    name = api.created[0][1]["metadata"]["name"]
    text = str(failure.value)
    assert f"TFJob {name} in namespace team-a failed: TFJobFailed: {message}" in text
    assert (
        "Replicas when last seen: chief-0 Running; worker-0 Running (CrashLoopBackOff: back-off "
        "10s; last ended OOMKilled (exit code 137)); worker-1 Failed (OOMKilled (exit code 137))"
    ) in text
    assert f"kubectl logs -n team-a -l training.kubeflow.org/job-name={name}" in text
    assert not api.deleted  # the operator cleans up a failed job (cleanPodPolicy, TTL)


def _service_account_token(namespace, name):
    """A bound service account token as the kubelet mounts it (the signature is not checked)."""

    def part(claims):
        return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    claims = {
        "aud": ["https://kubernetes.default.svc"],
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name}},
    }
    return ".".join([part({"alg": "RS256", "kid": "k1"}), part(claims), "c2lnbmF0dXJl"])


def test_replicas_run_as_the_steps_service_account_on_gpu_nodes(tmp_path, monkeypatch, caplog):
    """By default the replicas run as the launcher pod's own service account (read from its
    token: the steps' bucket identity), in its namespace; the setting overrides it; in another
    namespace they get that one's default. GPU replicas carry the Trainer's tolerations and node
    selector."""
    pod = tmp_path / "serviceaccount"
    pod.mkdir()
    (pod / "token").write_text(_service_account_token("team-a", "default-editor"))
    (pod / "namespace").write_text("team-a\n")
    monkeypatch.setattr(tj, "SERVICE_ACCOUNT_DIR", str(pod))
    gpu_nodes = {
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
    }
    succeeded = _statuses(_condition("Created", "c"), _condition("Succeeded", "TFJobSucceeded"))
    caplog.set_level("INFO", logger="absl")  # earlier tests may lower absl verbosity
    for extra, namespace, account in [
        ({}, "team-a", "default-editor"),
        ({"service_account": "trainer"}, "team-a", "trainer"),
        ({"namespace": "team-b"}, "team-b", None),
    ]:
        settings = {"image": "img:1", "gpus": 1, "poll_seconds": 0.05, **gpu_nodes, **extra}
        settings["deadline_seconds"] = 7200
        inputs, outputs, props = _step(tmp_path / namespace / str(account), settings)
        serving = tmp_path / namespace / str(account) / "model" / "Format-Serving"
        serving.mkdir(parents=True)
        (serving / "saved_model.pb").write_bytes(b"chief's export")
        with KubeStandIn(succeeded) as api:
            tj.TFJobExecutor(api_client=tj.load_api_client(host=api.url)).Do(inputs, outputs, props)
        ((created_in, job),) = api.created
        assert created_in == namespace
        assert job["spec"]["runPolicy"]["activeDeadlineSeconds"] == 7200
        for spec in job["spec"]["tfReplicaSpecs"].values():
            pod_spec = spec["template"]["spec"]
            assert pod_spec.get("serviceAccountName") == account, extra
            assert pod_spec["tolerations"] == gpu_nodes["tolerations"]
            assert pod_spec["nodeSelector"] == gpu_nodes["node_selector"]
            assert pod_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert (
        "run as namespace team-b's default service account: this pod's (default-editor) lives in "
        "namespace team-a"
    ) in caplog.text


@pytest.mark.parametrize("who", ["operator", "launcher", "launcher, pods unreadable"])
def test_replicas_that_cannot_be_scheduled_fail_the_step_at_the_deadline(who, tmp_path):
    """No node has the GPUs: the replicas stay Pending. At the deadline the operator fails the
    job (runPolicy.activeDeadlineSeconds) and deletes its pods; where it does not (an operator
    that ignores it), the launcher deletes the job itself two polls later. Either way the step
    fails naming each replica's state and the scheduler's reason."""
    settings = {"image": "img:1", "gpus": 1, "namespace": "team-a"}
    settings |= {"poll_seconds": 0.05, "deadline_seconds": 1}
    inputs, outputs, props = _step(tmp_path, settings)
    rules = (
        [r for r in _role_rules() if "pods" not in r["resources"]] if "unreadable" in who else None
    )
    stand_in = KubeStandIn(
        _statuses(_condition("Created", "TFJobCreated")),
        pods=unschedulable,
        enforce_deadline=who == "operator",
        rules=rules,
    )
    with stand_in as api:
        executor = tj.TFJobExecutor(api_client=tj.load_api_client(host=api.url))
        with pytest.raises(RuntimeError) as failure:
            executor.Do(inputs, outputs, props)
    name = api.created[0][1]["metadata"]["name"]
    text = str(failure.value)
    pending = (
        "Pending (Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu. "
        "preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.)"
    )
    if who == "operator":
        assert f"failed: TFJobFailed: Job {name} has failed because it was active longer" in text
        assert f"Replicas when last seen: chief-0 {pending}; worker-0 {pending}" in text
        assert not api.deleted  # the operator deleted the pods
        return
    assert f"TFJob {name} in namespace team-a did not succeed within its deadline, 1 s" in text
    assert "Deleted the job and its pods." in text and api.deleted == [name]
    assert f"kubectl describe pods -n team-a -l training.kubeflow.org/job-name={name}" in text
    if who == "launcher":
        assert f"Job: Created; replicas: chief-0 {pending}; worker-0 {pending}." in text
    else:
        assert "its pods are unreadable: 403 Forbidden; deploy/tfjob-rbac.yaml lets" in text


# ---------------------------------------------------------------- the replicas train for real


def _kubeconfig(path, server, namespace):
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stand-in", "cluster": {"server": server}}],
        "users": [{"name": "me", "user": {"token": "t"}}],
        "contexts": [
            {
                "name": "ctx",
                "context": {"cluster": "stand-in", "user": "me", "namespace": namespace},
            }
        ],
        "current-context": "ctx",
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.slow
def test_pipeline_trainer_trains_as_chief_and_worker(pipeline_run, tmp_path, monkeypatch):
    from tfx import v1 as tfx

    root = pipeline_run["pipeline_root"]
    (graph_uri,) = glob.glob(f"{root}/Transform/transform_graph/*")
    (examples_uri,) = glob.glob(f"{root}/VideoExampleGen/examples/*")
    examples = tfx.dsl.Importer(
        source_uri=examples_uri,
        artifact_type=tfx.types.standard_artifacts.Examples,
        properties={"split_names": artifact_utils.encode_split_names(["train", "eval"])},
    ).with_id("examples")
    graph = tfx.dsl.Importer(
        source_uri=graph_uri, artifact_type=tfx.types.standard_artifacts.TransformGraph
    ).with_id("graph")
    # The smallest Video Swin: the replicas' cluster and the artifacts are tested, not the model.
    options = tiny_train_options(epochs=1, batch_size=4, variant="micro")
    trainer = tj.Trainer(
        run_fn="model.train.run_fn",
        examples=examples.outputs["result"],
        transform_graph=graph.outputs["result"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config={
            OPTIONS_KEY: options.to_json(),
            tj.TFJOB_KEY: {"image": "video-swin-tfx:test", "workers": 2, "poll_seconds": 0.2},
        },
    )
    assert trainer.id == "Trainer"
    pipeline_root = tmp_path / "root"
    (tmp_path / "pods").mkdir()
    with KubeStandIn(log_dir=str(tmp_path / "pods")) as api:
        # As on a laptop: no in-cluster config, the kubeconfig's server and namespace.
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", _kubeconfig(tmp_path / "kubeconfig", api.url, "ml-team"))
        tfx.orchestration.LocalDagRunner().run(
            tfx.dsl.Pipeline(
                pipeline_name="tfjob-test",
                pipeline_root=str(pipeline_root),
                components=[examples, graph, trainer],
                metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                    str(tmp_path / "metadata.sqlite")
                ),
            )
        )
    ((namespace, job),) = api.created
    name = job["metadata"]["name"]
    assert namespace == "ml-team" and name.startswith("tfjob-test-trainer-")
    logs = {pod: (tmp_path / "pods" / f"{pod}.log").read_text() for pod in api.replicas}
    assert set(logs) == {f"{name}-chief-0", f"{name}-worker-0"}
    for log in logs.values():
        # One cluster of two: a global batch of 2 x 4 clips.
        assert re.search(r"(MultiWorkerMirrored|CollectiveAllReduce)Strategy with 2 replica", log)
        assert "steps of 8 clips (4 per replica)" in log
    (model_uri,) = glob.glob(f"{pipeline_root}/Trainer/model/*")
    (run_uri,) = glob.glob(f"{pipeline_root}/Trainer/model_run/*")
    assert os.path.exists(f"{model_uri}/Format-Serving/saved_model.pb")  # the chief's export
    with open(f"{model_uri}/training.json") as f:
        record = json.load(f)
    assert record["options"]["epochs"] == 1
    # The worker ran the same run_fn to its end, exporting beside the run, not as the model.
    assert os.path.exists(f"{run_uri}/worker-export-0/saved_model.pb")
    assert set(os.listdir(model_uri)) == {"Format-Serving", "training.json"}
