"""The compiled Kubeflow spec runs: kubeflow_runner's spec, played by tests/pipeline/kfp_launcher.py
as Kubeflow Pipelines' open-source backend would run it, ends with a pushed model that classifies.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import pathlib

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from tests.pipeline import kfp_launcher


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """12 real .avi clips: 2 of the embedded classes, 3 groups (split 1: 8 train, 4 eval)."""
    from data import synthetic

    spec = dataclasses.replace(
        synthetic.SPEC,
        classes=("ShiftLeft", "ShiftRight"),
        groups=3,
        clips_per_group=2,
        num_frames=16,
        height=32,
        width=32,
    )
    return synthetic.generate(tmp_path_factory.mktemp("kfp") / "data", 0, spec)


@pytest.mark.slow
def test_compiled_spec_runs_to_a_pushed_model(tiny_root, tmp_path):
    import kubeflow_runner

    root, serving = tmp_path / "root", tmp_path / "serving"
    kubeflow_runner.main(
        ["compile", "--output", str(tmp_path / "pipeline.yaml"), "--image", "img"]
        + ["--pipeline-root", str(root), "--data-root", str(tiny_root)]
        + ["--serving-dir", str(serving)]  # an inferred schema (SchemaGen) on 16-frame videos
        + ["--beam-pipeline-args", "--direct_running_mode=in_memory --direct_num_workers=1"]
        + ["--variant", "tiny_w4", "--clip-frames", "8", "--image-size", "32", "--gpus", "0"]
        + ["--epochs", "1", "--batch-size", "4", "--min-accuracy", "0"]
    )
    spec, _ = kfp_launcher.load_spec(tmp_path / "pipeline.yaml")
    # The pipeline root: the YAML's defaultPipelineRoot, as KFP reads it. Input artifacts arrive
    # untyped, as from KFP's backend: pipeline/kfp_entrypoint.py types them (tensorflow/tfx#7768).
    results = kfp_launcher.run_pipeline_spec(tmp_path / "pipeline.yaml")

    assert set(results) == set(spec.root.dag.tasks)
    for name, result in results.items():
        assert result.executor_output or not result.artifacts, f"{name} wrote no ExecutorOutput"

    examples = results["VideoExampleGen"].artifacts["examples"]
    assert json.loads(examples["metadata"]["split_names"]) == ["train", "eval"]
    for split in ("train", "eval"):
        assert glob.glob(f"{examples['uri']}/Split-{split}/*.gz")
    # split_names travelled through the recorded metadata to StatisticsGen.
    statistics = results["StatisticsGen"].artifacts["statistics"]
    assert json.loads(statistics["metadata"]["split_names"]) == ["train", "eval"]

    # Every tiny video has 16 frames; the inferred schema still lets a video have any number.
    schema = schema_pb2.Schema()
    schema_dir = results["SchemaGen"].artifacts["schema"]["uri"]
    text_format.Parse(pathlib.Path(schema_dir, "schema.pbtxt").read_text(), schema)
    (frames,) = [f for f in schema.feature if f.name == "frames"]
    assert not frames.HasField("shape") and frames.value_count.min == 1

    model = results["Trainer"].artifacts["model"]["uri"]
    assert os.path.exists(f"{model}/Format-Serving/saved_model.pb")
    blessing = results["Evaluator"].artifacts["blessing"]
    assert blessing["metadata"]["blessed"] == 1
    assert os.path.exists(f"{blessing['uri']}/BLESSED")

    pushed = results["Pusher"].artifacts["pushed_model"]["metadata"]
    assert pushed["pushed"] == 1
    version = pushed["pushed_destination"]
    assert os.path.dirname(version) == str(serving / "video_swin")
    _classifies(version, f"{examples['uri']}/Split-eval")


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
_PRODUCER = """
import json, sys
executor_input = json.loads(sys.argv[1])
out = executor_input["outputs"]["artifacts"]["data"]["artifacts"][0]
out["metadata"] = {"split_names": '["train"]', "count": 3}
with open(executor_input["outputs"]["outputFile"], "w") as f:
    json.dump({"artifacts": {"data": {"artifacts": [out]}}}, f)
"""
_CONSUMER = """
import json, sys
executor_input, uri = json.loads(sys.argv[1]), sys.argv[2]
(data,) = executor_input["inputs"]["artifacts"]["data"]["artifacts"]
assert data["type"] == {"instanceSchema": ""}, data  # KFP's driver keeps no artifact schema
assert data["name"] == "1" and data["uri"] == uri, data
assert data["metadata"]["split_names"] == '["train"]' and data["metadata"]["count"] == 3, data
assert executor_input["inputs"]["parameterValues"] == {"n": 2, "flag": "7"}, executor_input
"""
_TYPE = {"instanceSchema": "title: tfx.Examples\ntype: object\n"}


def _two_tasks() -> dict:
    def component(label, inputs=None, outputs=None):
        return {"executorLabel": label, "inputDefinitions": inputs or {}, **(outputs or {})}

    def container(program, *args):
        return {
            "container": {"image": "img", "command": ["python", "-c", program], "args": list(args)}
        }

    data = {"artifacts": {"data": {"artifactType": _TYPE}}}
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
            "produce": component("produce_exec", outputs={"outputDefinitions": data}),
            "consume": component("consume_exec", {**data, "parameters": params}),
        },
        "deploymentSpec": {
            "executors": {
                "produce_exec": container(_PRODUCER, "{{$}}"),
                "consume_exec": container(_CONSUMER, "{{$}}", "{{$.inputs.artifacts['data'].uri}}"),
            }
        },
    }


def test_executor_input_as_kfp_builds_it(tmp_path):
    """Output metadata reaches the consumer under an MLMD-style name; constants are typed."""
    results = kfp_launcher.run_pipeline_spec(_two_tasks(), tmp_path)
    assert list(results) == ["produce", "consume"]  # dependency order, not name order
    recorded = results["produce"].artifacts["data"]
    assert recorded["uri"] == str(tmp_path / "two" / "run-1" / "produce" / "data")
    assert recorded["metadata"]["display_name"] == "data"


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
