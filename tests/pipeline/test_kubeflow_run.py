"""The compiled Kubeflow spec runs: kubeflow_runner's spec, played by tests/pipeline/kfp_launcher.py
as Kubeflow Pipelines' open-source backend would run it, ends with a pushed model that classifies.
"""

from __future__ import annotations

import glob
import json
import os
import pathlib

import pytest
import yaml
from google.protobuf import json_format, text_format
from kfp.pipeline_spec import pipeline_spec_pb2 as pb
from tensorflow_metadata.proto.v0 import schema_pb2

from tests.helpers import tiny_spec
from tests.pipeline import kfp_launcher


@pytest.fixture
def tiny_root(tmp_path_factory):
    """12 real .avi clips: 2 of the embedded classes, 3 groups (split 1: 8 train, 4 eval)."""
    from data import synthetic

    return synthetic.generate(tmp_path_factory.mktemp("kfp") / "data", 0, tiny_spec())


def _compile(tmp_path, root, data_root, serving, *flags) -> pathlib.Path:
    import kubeflow_runner

    spec = tmp_path / "pipeline.yaml"
    kubeflow_runner.main(
        ["compile", "--output", str(spec), "--image", "img"]
        + ["--pipeline-root", root, "--data-root", data_root, "--serving-dir", serving]
        # an inferred schema (SchemaGen) on 16-frame videos
        + ["--beam-pipeline-args", "--direct_running_mode=in_memory --direct_num_workers=1"]
        + ["--variant", "micro", "--clip-frames", "8", "--image-size", "32", "--gpus", "0"]
        + ["--epochs", "1", "--batch-size", "4", "--min-accuracy", "0", *flags]
    )
    return spec


def _check_run(spec_file, results, read) -> tuple[dict, str]:
    """What both runs must show; `read(uri)` reads a file wherever the root keeps it.
    Returns (the Examples artifact, the pushed version's URI)."""
    spec, _ = kfp_launcher.load_spec(spec_file)
    assert set(results) == set(spec.root.dag.tasks)
    for name, result in results.items():
        declared = set(result.artifacts) - {"executor-logs"}  # that one is the launcher's
        assert result.executor_output or not declared, f"{name} wrote no ExecutorOutput"
        assert "executor-logs" not in result.executor_output.get("artifacts", {}), name

    examples = results["VideoExampleGen"].artifacts["examples"]
    assert json.loads(examples["metadata"]["split_names"]) == ["train", "eval"]
    # split_names travelled through the recorded metadata to StatisticsGen.
    statistics = results["StatisticsGen"].artifacts["statistics"]
    assert json.loads(statistics["metadata"]["split_names"]) == ["train", "eval"]

    # Every tiny video has 16 frames; the inferred schema still lets a video have any number.
    schema = schema_pb2.Schema()
    schema_uri = results["SchemaGen"].artifacts["schema"]["uri"]
    text_format.Parse(read(f"{schema_uri}/schema.pbtxt").decode(), schema)
    (frames,) = [f for f in schema.feature if f.name == "frames"]
    assert not frames.HasField("shape") and frames.value_count.min == 1

    model = results["Trainer"].artifacts["model"]["uri"]
    assert read(f"{model}/Format-Serving/saved_model.pb")
    blessing = results["Evaluator"].artifacts["blessing"]
    assert blessing["metadata"]["blessed"] == 1
    assert read(f"{blessing['uri']}/BLESSED") == b""

    pushed = results["Pusher"].artifacts["pushed_model"]["metadata"]
    assert pushed["pushed"] == 1
    return examples, pushed["pushed_destination"]


@pytest.mark.slow
def test_compiled_spec_runs_to_a_pushed_model(tiny_root, tmp_path):
    """A local root standing for a bucket TensorFlow reads itself (gs://), played as Kubeflow
    Pipelines 2.3 (before executor-logs and uuid'd output URIs)."""
    root, serving = tmp_path / "root", tmp_path / "serving"
    spec_file = _compile(tmp_path, str(root), str(tiny_root), str(serving))
    # The pipeline root: the YAML's defaultPipelineRoot, as KFP reads it. Input artifacts arrive
    # untyped, as from KFP's backend: pipeline/kfp_entrypoint.py types them (tensorflow/tfx#7768).
    results = kfp_launcher.run_pipeline_spec(spec_file, kfp_version="2.3.0")
    examples, version = _check_run(spec_file, results, lambda p: pathlib.Path(p).read_bytes())
    assert examples["uri"] == str(
        root / "video-swin-tfx" / "run-1" / "VideoExampleGen" / "examples"
    )
    for split in ("train", "eval"):
        assert glob.glob(f"{examples['uri']}/Split-{split}/*.gz")
    assert os.path.dirname(version) == str(serving / "video_swin")
    _classifies(version, f"{examples['uri']}/Split-eval")


class MinioRuns:
    """Three runs of one compiled spec on KFP's minio:// root (an S3-protocol server on loopback),
    played as Kubeflow Pipelines 2.17 with the stock manifests, caching on, one Cluster (ML
    Metadata and the cache) for all: span 0; span 1 arrived; nothing new. The learning rate is 0,
    so the second model, warm-started from the first, scores as the served one: not below it,
    blessed (as in tests/pipeline/test_retraining.py, the same sequence under LocalDagRunner)."""

    ROOT = "minio://mlpipeline/v2/artifacts"

    def __init__(self, workdir, s3_server, client):
        self.workdir, self.client = workdir, client
        self.store = kfp_launcher.ObjectStore(
            s3_server["AWS_ENDPOINT_URL"],
            s3_server["AWS_ACCESS_KEY_ID"],
            s3_server["AWS_SECRET_ACCESS_KEY"],
        )
        self.env = {"AWS_DEFAULT_REGION": s3_server["AWS_DEFAULT_REGION"]}
        # The steps' credentials (for the videos and the serving directory) come only from KFP's
        # MinIO secret, which a minio:// root's spec hands every step (secret_as_env).
        self.secrets = {
            "mlpipeline-minio-artifact": {
                "accesskey": s3_server["AWS_ACCESS_KEY_ID"],
                "secretkey": s3_server["AWS_SECRET_ACCESS_KEY"],
            }
        }
        self.cluster = kfp_launcher.Cluster()
        self.runs: list[dict[str, kfp_launcher.TaskResult]] = []
        endpoint = ("--s3-endpoint", s3_server["AWS_ENDPOINT_URL"])  # the steps' boto3 endpoint
        self.spec = _compile(
            workdir,
            self.ROOT,
            "s3://videos/tiny",
            "s3://serving",
            *endpoint,
            "--learning-rate",
            "0",
        )

    def add_span(self, number: int) -> None:
        from tests.helpers import add_span

        local = add_span(self.workdir / "videos", number)
        for path in sorted(local.rglob("*")):
            if path.is_file():
                key = f"tiny/span-{number}/{path.relative_to(local)}"
                self.client.upload_file(str(path), "videos", key)

    def run(self) -> dict[str, kfp_launcher.TaskResult]:
        results = kfp_launcher.run_pipeline_spec(
            self.spec,
            run_id=f"run-{len(self.runs) + 1}",
            store=self.store,
            workdir=self.workdir / "work",
            env=self.env,
            secrets=self.secrets,
            cluster=self.cluster,
        )
        self.runs.append(results)
        return results

    def read(self, uri: str) -> bytes:
        bucket, key = self.store.split(uri)
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def minio_runs(tmp_path_factory, s3_server):
    import boto3

    with pytest.MonkeyPatch.context() as env:
        for key, value in s3_server.items():  # this process reads the store too
            env.setenv(key, value)
        client = boto3.client("s3")
        for bucket in ("mlpipeline", "videos", "serving"):
            client.create_bucket(Bucket=bucket)
        runs = MinioRuns(tmp_path_factory.mktemp("minio"), s3_server, client)
        runs.add_span(0)
        runs.run()
        runs.add_span(1)
        runs.run()
        runs.run()
        yield runs


@pytest.mark.slow
def test_compiled_spec_runs_on_minio_to_a_pushed_model(minio_runs, tmp_path):
    """KFP's own default root (minio://mlpipeline/v2/artifacts) on an S3-protocol server, the
    videos and the serving directory on it too (s3://), played as Kubeflow Pipelines 2.17 with
    the stock manifests (executor-logs on): every artifact goes through the launcher's mirror,
    ML Metadata records remote URIs, and the pushed model classifies."""
    root, store, read = minio_runs.ROOT, minio_runs.store, minio_runs.read
    results = minio_runs.runs[0]
    examples, version = _check_run(minio_runs.spec, results, read)
    for name, result in results.items():
        if result.executor_input is None:
            continue  # ImportSchemaGen-style importers have no pod
        assert "executor-logs" in result.artifacts, name
        # The launcher's copy of the step's output (TFX's entry point logs this line).
        assert b"Starting executor" in read(result.artifacts["executor-logs"]["uri"]), name
        for key, artifact in result.artifacts.items():
            assert artifact["uri"].startswith(f"{root}/video-swin-tfx/run-1/{name}/"), (
                key,
                artifact,
            )
            strings = [v for v in artifact["metadata"].values() if isinstance(v, str)]
            assert not any(str(minio_runs.workdir) in v for v in strings), (name, key, strings)
    for split in ("train", "eval"):
        assert store.keys(f"{examples['uri']}/Split-{split}/")
    # Heavy inputs were copied into the Trainer's pod by the launcher, then read there; where the
    # platform spec mounts a volume over a pod's mirror, they lie on that volume.
    assert any("/Split-train/" in k for k in results["Trainer"].downloaded["examples"])
    for name in ("VideoExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator"):
        assert "/minio" in results[name].volumes, name  # --step-disk's volume over the mirror
    for name, result in results.items():
        for inputs in (result.executor_input or {}).get("inputs", {}).get("artifacts", {}).values():
            local = pathlib.Path(
                f"{result.pod}{kfp_launcher.mirror_path(inputs['artifacts'][0]['uri'])}"
            )
            if result.volumes and local.exists():
                volumes = result.volumes.values()
                assert any(local.resolve().is_relative_to(v.resolve()) for v in volumes), name

    assert version.startswith("s3://serving/video_swin/")  # where KServe's storageUri points
    local = tmp_path / "pushed"
    for key in store.keys(version + "/"):
        target = local / os.path.relpath(key, store.split(version)[1])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read(f"s3://serving/{key}"))
    eval_split = tmp_path / "eval"
    for key in store.keys(f"{examples['uri']}/Split-eval/"):
        eval_split.mkdir(exist_ok=True)
        (eval_split / os.path.basename(key)).write_bytes(read(f"minio://mlpipeline/{key}"))
    _classifies(str(local), str(eval_split))


def _ran(results) -> set[str]:
    return {name for name, result in results.items() if not result.cached}


def _plan(results) -> dict:
    from model.options import SPANS_KEY

    return json.loads(results["TrainingPlan"].parameters["trainer_config"])[SPANS_KEY]


@pytest.mark.slow
def test_a_new_span_is_ingested_alone_and_trained_on_with_the_stored_ones(minio_runs):
    """The second run, after span 1 arrived: KFP's cache keys, from parameter values, send
    VideoExampleGen and everything after it to run again, on span 1 only; the Trainer trains on
    both spans (span 0 where the first run stored it on minio://, copied into its pod), starts
    from the served model and is compared with it."""
    first, second = minio_runs.runs[:2]
    assert _ran(second) == set(second)  # new statistics: a new inferred schema too
    ingest = json.loads(second["NewSpans"].parameters["ingest"])
    assert [s["span"] for s in ingest["spans"]] == [1]
    assert ingest["spans"][0]["path"] == "s3://videos/tiny/span-1"
    examples = second["VideoExampleGen"].artifacts["examples"]
    assert examples["metadata"]["span"] == 1 and examples["metadata"]["spans"] == "1"
    assert examples["metadata"]["num_listed_videos"] == 12  # span 1's videos only
    plan = _plan(second)
    first_examples = first["VideoExampleGen"].artifacts["examples"]["uri"]
    assert plan["spans"] == [0, 1] and plan["examples"] == [first_examples] and plan["train"]
    trainer_log = second["Trainer"].log.read_text()
    assert "an earlier span's examples copied to" in trainer_log
    record = json.loads(
        minio_runs.read(f"{second['Trainer'].artifacts['model']['uri']}/training.json")
    )
    assert record["spans"] == [0, 1] and record["train_examples"] == 16
    assert record["started_from"].startswith("base model")
    pushed = first["Pusher"].artifacts["pushed_model"]["metadata"]["pushed_version"]
    assert second["TrainingPlan"].parameters["served_version"] == pushed
    blessing = second["Evaluator"].artifacts["blessing"]["metadata"]
    served_copy = second["LatestPushedModel"].artifacts["model"]["uri"]
    assert blessing["baseline_model"] == served_copy  # judged against the served model
    assert blessing["blessed"] == 1  # the same model again (learning rate 0): not below
    assert blessing["spans"] == "0,1"  # in ML Metadata: the spans that made the model
    assert second["Pusher"].artifacts["pushed_model"]["metadata"]["pushed"] == 1
    registry = "s3://mlpipeline/v2/artifacts/video-swin-tfx/spans"
    entry = json.loads(minio_runs.read(f"{registry}/span-1.json"))
    assert entry["examples"] == examples["uri"] and entry["examples"].startswith("minio://")


@pytest.mark.slow
def test_without_new_data_the_cache_reuses_ingestion_and_nothing_is_trained(minio_runs):
    """The third run: the resolvers run (their caching is off, and their run-id parameter is new);
    every step their values leave unchanged is taken from KFP's cache; the Trainer, told the
    served model was trained on this window, trains nothing, and nothing is pushed."""
    second, third = minio_runs.runs[1:]
    cached = {"VideoExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator"}
    cached |= {"AnomaliesGate", "RegisterSpans", "Transform"}
    assert cached <= set(third) - _ran(third)
    assert {"NewSpans", "TrainingPlan"} <= _ran(third)
    for name in cached:
        assert third[name].artifacts == second[name].artifacts, name  # the same ML Metadata ids
    assert third["NewSpans"].parameters == second["NewSpans"].parameters
    plan = _plan(third)
    pushed = second["Pusher"].artifacts["pushed_model"]["metadata"]["pushed_version"]
    assert third["TrainingPlan"].parameters["served_version"] == pushed
    assert plan["spans"] == [0, 1] and not plan["train"]
    assert f"the served model {pushed} was trained on these spans" in plan["reason"]
    assert "No training in this run" in third["Trainer"].log.read_text()
    blessing = third["Evaluator"].artifacts["blessing"]["metadata"]
    assert blessing["blessed"] == 0 and "made no model" in blessing["not_evaluated"]
    assert third["Pusher"].artifacts["pushed_model"]["metadata"]["pushed"] == 0


def _classifies(saved_model: str, eval_split: str) -> None:
    import tensorflow as tf

    files = sorted(glob.glob(f"{eval_split}/*.gz"))
    (example,) = tf.data.TFRecordDataset(files, compression_type="GZIP").take(1)
    outputs = tf.saved_model.load(saved_model).signatures["serving_default"](
        examples=tf.reshape(example, [1])
    )
    classes = {c.decode() for c in outputs["classes"].numpy().ravel()}
    assert classes == {"ShiftLeft", "ShiftRight"}
    assert abs(float(tf.reduce_sum(outputs["probabilities"])) - 1.0) < 1e-4


def _resolver_spec() -> dict:
    """A TFX pipeline with a latest-blessed-model Resolver, compiled by KubeflowV2DagRunner."""
    from tfx import v1 as tfx

    resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    schema = tfx.components.ImportSchemaGen(schema_file="pipeline/schema/synthetic/schema.pbtxt")
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="resolver", pipeline_root="/unused", components=[schema, resolver]
    )
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image="img", use_pipeline_spec_2_1=True
        )
    )
    return runner.run(pipeline, write_out=False)


def test_a_resolver_task_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(kfp_launcher.SpecRefused, match="resolver executors not implemented"):
        kfp_launcher.run_pipeline_spec(_resolver_spec(), tmp_path)
    assert not list(tmp_path.iterdir())  # not even ImportSchemaGen ran


# A two-task spec whose commands are small Python programs: what the launcher hands a task.
# Each writes an artifact's files where a KFP component does: the launcher's local mirror of its
# URI (under the pod's KFP_LAUNCHER_MIRROR_ROOT), or the URI itself for a local root.
_LOCAL = """
import os
def local(uri):
    for scheme, folder in (("gs://", "gcs"), ("minio://", "minio"), ("s3://", "s3")):
        if uri.startswith(scheme):
            return os.path.join(os.environ["KFP_LAUNCHER_MIRROR_ROOT"], folder, uri[len(scheme):])
    return uri
"""
_PRODUCER = (
    _LOCAL
    + """
import json, sys
executor_input = json.loads(sys.argv[1])
print("hello from produce")
outputs = executor_input["outputs"]["artifacts"]
written = {}
for key in ("data", "data_run"):
    if key in outputs:
        out = outputs[key]["artifacts"][0]
        os.makedirs(local(out["uri"]), exist_ok=True)
        with open(os.path.join(local(out["uri"]), "part-0"), "w") as f:
            f.write(key)
        written[key] = {"artifacts": [out]}
written["data"]["artifacts"][0]["metadata"] = {
    "split_names": '["train"]', "count": 3, "flagged": True, "names": ["a"], "info": {"k": 1},
    **json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}"),
}
with open(executor_input["outputs"]["outputFile"], "w") as f:
    json.dump({"artifacts": written}, f)
"""
)
_CONSUMER = (
    _LOCAL
    + """
import json, sys
executor_input, uri = json.loads(sys.argv[1]), sys.argv[2]
(data,) = executor_input["inputs"]["artifacts"]["data"]["artifacts"]
assert data["type"] == {"instanceSchema": ""}, data  # KFP's driver keeps no artifact schema
assert data["name"] == "1" and data["uri"] == uri, data
# ML Metadata's conversion: booleans as numbers, lists and structs wrapped.
expected = {"split_names": '["train"]', "count": 3, "flagged": 1, "names": {"list": ["a"]},
            "info": {"struct": {"k": 1}}, "display_name": "data"}
assert {k: data["metadata"][k] for k in expected} == expected, data["metadata"]
assert executor_input["inputs"]["parameterValues"] == {"n": 2, "flag": "7"}, executor_input
with open(os.path.join(local(uri), "part-0")) as f:  # downloaded before the command
    assert f.read() == "data"
"""
)
_TYPE = {"instanceSchema": "title: tfx.Examples\ntype: object\n"}


def _two_tasks(producer_args=(), siblings=False) -> dict:
    def component(label, inputs=None, outputs=None):
        return {"executorLabel": label, "inputDefinitions": inputs or {}, **(outputs or {})}

    def container(program, *args):
        return {
            "container": {"image": "img", "command": ["python", "-c", program], "args": list(args)}
        }

    data = {"artifacts": {"data": {"artifactType": _TYPE}}}
    produced = {"artifacts": {**data["artifacts"], "data_run": {"artifactType": _TYPE}}}
    params = {"n": {"parameterType": "NUMBER_INTEGER"}, "flag": {"parameterType": "STRING"}}
    return {
        "pipelineInfo": {"name": "two"},
        "schemaVersion": "2.1.0",
        "root": {
            "dag": {
                "tasks": {
                    "consume": {
                        "taskInfo": {"name": "consume"},
                        "componentRef": {"name": "consume"},
                        "inputs": {
                            "artifacts": {
                                "data": {
                                    "taskOutputArtifact": {
                                        "producerTask": "produce",
                                        "outputArtifactKey": "data",
                                    }
                                }
                            },
                            "parameters": {
                                "n": {"runtimeValue": {"constant": 2}},
                                "flag": {"runtimeValue": {"constant": 7}},
                            },
                        },
                    },
                    "produce": {
                        "taskInfo": {"name": "produce"},
                        "componentRef": {"name": "produce"},
                    },
                }
            }
        },
        "components": {
            "produce": component(
                "produce_exec", outputs={"outputDefinitions": produced if siblings else data}
            ),
            "consume": component("consume_exec", {**data, "parameters": params}),
        },
        "deploymentSpec": {
            "executors": {
                "produce_exec": container(_PRODUCER, "{{$}}", *producer_args),
                "consume_exec": container(_CONSUMER, "{{$}}", "{{$.inputs.artifacts['data'].uri}}"),
            }
        },
    }


@pytest.mark.parametrize("version", ["2.0.0", "2.17.0"])
def test_executor_input_as_kfp_builds_it(tmp_path, version):
    """Output metadata reaches the consumer as ML Metadata returns it, under an MLMD-style name;
    constants are typed; output URIs and executor-logs as the played release makes them."""
    results = kfp_launcher.run_pipeline_spec(_two_tasks(), tmp_path, kfp_version=version)
    assert list(results) == ["produce", "consume"]  # dependency order, not name order
    recorded = results["produce"].artifacts["data"]
    task_root = tmp_path / "two" / "run-1" / "produce"
    if version == "2.0.0":
        assert recorded["uri"] == str(task_root / "data")
        assert "artifacts" not in results["consume"].executor_input["outputs"]  # no outputs
    else:  # 2.4+: <task>/<uuid>/<key>; 2.5+: the driver adds executor-logs (system.Artifact)
        salt = pathlib.Path(recorded["uri"]).parent
        assert salt.parent == task_root and len(salt.name) == 36
        logs = results["consume"].executor_input["outputs"]["artifacts"]["executor-logs"]
        assert logs["artifacts"][0]["type"] == {"schemaTitle": "system.Artifact"}
    assert recorded["metadata"]["display_name"] == "data"


@pytest.fixture
def store(s3_env):
    s3_env.create_bucket(Bucket="mlpipeline")
    return kfp_launcher.ObjectStore(
        os.environ["AWS_ENDPOINT_URL"],
        os.environ["AWS_ACCESS_KEY_ID"],
        os.environ["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.mark.parametrize("version", ["2.16.0", "2.17.0"])
def test_artifacts_travel_through_the_object_store(tmp_path, store, version):
    """A minio:// root: the producer writes its mirror, the launcher uploads it after the command
    and downloads it into the consumer's own pod before its command; up to 2.16 `data` also
    pulls `data_run` (bare key prefix). The step's output is the launcher's executor-logs."""
    results = kfp_launcher.run_pipeline_spec(
        _two_tasks(siblings=True),
        "minio://mlpipeline/v2/artifacts",
        kfp_version=version,
        store=store,
        workdir=tmp_path,
    )
    produce, consume = results["produce"], results["consume"]
    data = produce.artifacts["data"]["uri"]
    assert data.startswith("minio://mlpipeline/v2/artifacts/two/run-1/produce/")
    _, key = store.split(data)
    assert produce.uploaded["data"] == [f"{key}/part-0"]
    pulled = set(consume.downloaded["data"])
    assert f"{key}/part-0" in pulled
    assert (f"{key}_run/part-0" in pulled) == (version == "2.16.0")
    assert consume.pod != produce.pod and not (consume.pod / "minio" / key / "part-0").is_symlink()

    logs = produce.artifacts["executor-logs"]["uri"]
    assert logs.endswith("/executor-logs" + ("-0" if version == "2.17.0" else ""))
    bucket, logs_key = store.split(logs)
    text = store.client.get_object(Bucket=bucket, Key=logs_key)["Body"].read().decode()
    assert "hello from produce" in text


def test_a_null_metadata_value_fails_the_step(tmp_path, store):
    with pytest.raises(kfp_launcher.TaskFailed, match="unknown/unsupported value type"):
        kfp_launcher.run_pipeline_spec(
            _two_tasks(producer_args=['{"gone": null}']),
            "s3://mlpipeline/root",
            store=store,
            workdir=tmp_path,
        )


def test_a_platform_volume_over_the_mirror_holds_the_downloads(tmp_path, store):
    """The spec's second YAML document (kfp-kubernetes) mounts a volume at /s3 for the consumer:
    its inputs are downloaded onto that volume."""
    platform = {
        "platforms": {
            "kubernetes": {
                "deploymentSpec": {
                    "executors": {
                        "consume_exec": {
                            "genericEphemeralVolume": [
                                {"volumeName": "mirror", "mountPath": "/s3", "size": "5Gi"}
                            ]
                        }
                    }
                }
            }
        }
    }
    spec_file = tmp_path / "two.yaml"
    spec_file.write_text(yaml.safe_dump_all([_two_tasks(), platform]))
    assert kfp_launcher.load_spec(spec_file)[0].pipeline_info.name == "two"
    results = kfp_launcher.run_pipeline_spec(
        spec_file, "s3://mlpipeline/root", store=store, workdir=tmp_path / "work"
    )
    consume = results["consume"]
    assert set(consume.volumes) == {"/s3"} and not results["produce"].volumes
    (key,) = consume.downloaded["data"]
    assert (consume.volumes["/s3"] / "mlpipeline" / key).read_text() == "data"


@pytest.mark.parametrize(
    "change, refusal",
    [
        (
            lambda s: s["root"]["dag"]["tasks"]["consume"].update(
                triggerPolicy={"condition": "inputs.parameter_values['n'] == 2"}
            ),
            "triggerPolicy condition",
        ),
        (
            lambda s: s["root"]["dag"]["tasks"]["consume"]["inputs"]["parameters"].update(
                n={"runtimeValue": {"constantValue": {"intValue": 2}}}
            ),
            "parameter 'n' given as constant_value: not implemented",
        ),
        (
            lambda s: s["deploymentSpec"]["executors"]["consume_exec"]["container"]["args"].append(
                "{{$.pipeline_job_name}}"
            ),
            "unsupported placeholder {{\\$.pipeline_job_name}}",
        ),
    ],
    ids=["condition", "spec-2.0-constant", "placeholder"],
)
def test_what_kfp_cannot_run_is_refused(tmp_path, change, refusal):
    spec = _two_tasks()
    change(spec)
    with pytest.raises(kfp_launcher.SpecRefused, match=refusal):
        kfp_launcher.run_pipeline_spec(spec, tmp_path)


# ---------------------------------------------------------------- the driver's cache


def _cacheable(spec: dict, *, producer_param=None) -> dict:
    """_two_tasks with caching on for both tasks and a consumer that only succeeds; the producer
    takes a parameter `token` when given (a constant: maybe a placeholder)."""
    tasks = spec["root"]["dag"]["tasks"]
    for task in tasks.values():
        task["cachingOptions"] = {"enableCache": True}
    executors = spec["deploymentSpec"]["executors"]
    executors["consume_exec"]["container"]["command"] = ["python", "-c", "pass"]
    if producer_param is not None:
        spec["components"]["produce"]["inputDefinitions"] = {
            "parameters": {"token": {"parameterType": "STRING"}}
        }
        tasks["produce"]["inputs"] = {
            "parameters": {"token": {"runtimeValue": {"constant": producer_param}}}
        }
    return spec


def test_a_task_with_the_same_inputs_is_taken_from_the_cache(tmp_path):
    """The second run's tasks have the same fingerprints: no pod runs and the consumer gets the
    first run's artifact (the same ML Metadata id); a changed parameter value runs again."""
    cluster = kfp_launcher.Cluster()
    first = kfp_launcher.run_pipeline_spec(_cacheable(_two_tasks()), tmp_path, cluster=cluster)
    second = kfp_launcher.run_pipeline_spec(
        _cacheable(_two_tasks()), tmp_path, run_id="run-2", cluster=cluster
    )
    for name in ("produce", "consume"):
        assert not first[name].cached and second[name].cached and second[name].pod is None
        assert second[name].fingerprint == first[name].fingerprint
        assert second[name].artifacts == first[name].artifacts
    assert not (tmp_path / ".pods" / "pods" / "run-2").exists()
    changed = _cacheable(_two_tasks())
    changed["root"]["dag"]["tasks"]["consume"]["inputs"]["parameters"]["n"] = {
        "runtimeValue": {"constant": 3}
    }
    third = kfp_launcher.run_pipeline_spec(changed, tmp_path, run_id="run-3", cluster=cluster)
    assert third["produce"].cached and not third["consume"].cached
    # The key holds the producer's artifact by its ML Metadata id, not its URI or contents.
    key = kfp_launcher.cache_key(
        json_format.ParseDict(third["consume"].executor_input["inputs"], pb.ExecutorInput.Inputs()),
        json_format.ParseDict(
            third["consume"].executor_input["outputs"], pb.ExecutorInput.Outputs()
        ),
        pb.ComponentSpec(),
        pb.PipelineDeploymentConfig.PipelineContainerSpec(image="img"),
    )
    assert key["inputArtifactNames"] == {
        "data": {"artifactNames": [first["produce"].artifacts["data"]["name"]]}
    }
    assert key["inputParameterValues"] == {"n": 3, "flag": "7"}
    assert "uri" not in json.dumps(key.get("outputArtifactsSpec", {}))


@pytest.mark.parametrize("version, cached", [("2.4.0", True), ("2.5.0", False), ("2.17.0", False)])
def test_the_run_id_placeholder_keeps_a_task_out_of_the_cache_from_2_5(tmp_path, version, cached):
    """{{$.pipeline_job_uuid}} in a parameter constant is the run's id from 2.5 (the driver
    substitutes it), so the task's key differs in every run; before, it is a constant."""
    cluster = kfp_launcher.Cluster()
    for run_id in ("run-1", "run-2"):
        spec = _cacheable(_two_tasks(), producer_param="{{$.pipeline_job_uuid}}")
        results = kfp_launcher.run_pipeline_spec(
            spec, tmp_path, run_id=run_id, cluster=cluster, kfp_version=version
        )
    assert results["produce"].cached is cached
    token = results["produce"].executor_input or {}
    if not cached:
        assert token["inputs"]["parameterValues"]["token"] == "run-2"


def test_a_task_whose_caching_is_off_runs_every_time(tmp_path):
    cluster = kfp_launcher.Cluster()
    for run_id in ("run-1", "run-2"):
        spec = _cacheable(_two_tasks())
        spec["root"]["dag"]["tasks"]["produce"]["cachingOptions"] = {"enableCache": False}
        results = kfp_launcher.run_pipeline_spec(spec, tmp_path, run_id=run_id, cluster=cluster)
    assert not results["produce"].cached and not results["produce"].fingerprint
    assert not results["consume"].cached  # its input is a new artifact: another fingerprint
