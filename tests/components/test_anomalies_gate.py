"""AnomaliesGate under LocalDagRunner: an unknown class stops the run at the gate with the anomaly
named; with the override the same run goes on (validation reused from the cache). And the gate
compiles for Kubeflow Pipelines v2."""

import json
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.orchestration import metadata

from components.anomalies_gate import AnomaliesGate, DataAnomaliesError
from components.video_example_gen import VideoExampleGen
from data import synthetic
from pipeline import configs
from tests.data.test_ingest import IN_PROCESS

pytestmark = pytest.mark.slow  # runs TFX components

SCHEMA = configs.UCF101_SCHEMA
CLASSES = ("ApplyEyeMakeup", "YoYo", "Juggle")  # Juggle: not one of UCF101's 101 classes


def _mini_ucf101(root):
    """UCF101's layout and official classInd plus a 102nd class; 3 clips of 3 classes."""
    videos, lists = root / "UCF-101", root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    class_index = Path(configs.UCF101_CLASS_INDEX).read_bytes() + b"102 Juggle\r\n"
    (lists / "classInd.txt").write_bytes(class_index)
    label_of = {line.split()[1]: line.split()[0] for line in class_index.decode().splitlines()}
    frames = np.random.default_rng(0).integers(0, 255, (20, 32, 32, 3), dtype=np.uint8)
    train, test = [], []
    for name in CLASSES:
        (videos / name).mkdir(parents=True)
        for g in (1, 2, 3):
            rel = f"{name}/v_{name}_g{g:02d}_c01.avi"
            synthetic.write_video(videos / rel, frames, fps=25)
            (test if g == 1 else train).append(rel if g == 1 else f"{rel} {label_of[name]}")
    (lists / "trainlist01.txt").write_text("".join(f"{x}\r\n" for x in train))
    (lists / "testlist01.txt").write_text("".join(f"{x}\r\n" for x in test))
    return root


def _pipeline(root, data_root, allow_anomalies):
    example_gen = VideoExampleGen(input_base=str(data_root))  # real-data defaults
    statistics = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema = tfx.components.ImportSchemaGen(schema_file=SCHEMA)
    validator = tfx.components.ExampleValidator(
        statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"]
    )
    gate = AnomaliesGate(anomalies=validator.outputs["anomalies"], allow_anomalies=allow_anomalies)
    return tfx.dsl.Pipeline(
        pipeline_name="gate-test",
        pipeline_root=str(root / "pipeline_root"),
        components=[example_gen, statistics, schema, validator, gate],
        enable_cache=True,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(root / "metadata.sqlite")
        ),
        beam_pipeline_args=IN_PROCESS,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run 1: the gate as default (stops). Run 2: the same pipeline with the override."""
    root = tmp_path_factory.mktemp("gate")
    data_root = _mini_ucf101(root / "data")
    with pytest.raises(DataAnomaliesError) as stopped:
        tfx.orchestration.LocalDagRunner().run(_pipeline(root, data_root, False))
    tfx.orchestration.LocalDagRunner().run(_pipeline(root, data_root, True))
    with metadata.Metadata(
        metadata.sqlite_metadata_connection_config(str(root / "metadata.sqlite"))
    ) as m:
        states = {}
        for execution in m.store.get_executions():
            (execution_type,) = m.store.get_execution_types_by_id([execution.type_id])
            states.setdefault(execution_type.name.rsplit(".", 1)[-1], []).append(
                metadata_store_pb2.Execution.State.Name(execution.last_known_state)
            )
    return stopped.value, root, states


def test_unknown_class_stops_at_the_gate_with_the_anomaly_named(runs):
    error, root, states = runs
    message = str(error)
    assert "ExampleValidator found" in message
    assert "[train] feature 'label_name'" in message and "Juggle" in message
    assert "[train] feature 'label'" in message  # 101: beyond the label range
    assert "allow_anomalies" in message
    (report,) = (root / "pipeline_root" / "ExampleValidator" / "anomalies").iterdir()
    assert f"Report: {report}" in message
    assert (report / "Split-train" / "SchemaDiff.pb").is_file()  # the report stays
    assert states["AnomaliesGate"][0] == "FAILED"


def test_override_goes_on_with_the_validation_reused(runs):
    _, _, states = runs
    assert states["AnomaliesGate"] == ["FAILED", "COMPLETE"]
    # The data did not change: run 2 reused ExampleGen's and ExampleValidator's outputs.
    assert states["VideoExampleGen"] == ["COMPLETE", "CACHED"]
    assert states["ExampleValidator"] == ["COMPLETE", "CACHED"]


def test_gate_compiles_for_kubeflow_v2(tmp_path):
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image="registry.example/video-swin-tfx:test"
        ),
        output_dir=str(tmp_path),
        output_filename="pipeline.json",
    )
    runner.run(_pipeline(tmp_path, "gs://bucket/ucf101", False))
    job = json.loads((tmp_path / "pipeline.json").read_text())
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    gate = spec.root.dag.tasks["AnomaliesGate"]
    assert list(gate.dependent_tasks) == ["ExampleValidator"]
    assert gate.inputs.artifacts["anomalies"].task_output_artifact.producer_task == (
        "ExampleValidator"
    )
    component = spec.components[gate.component_ref.name]
    assert "allow_anomalies" in component.input_definitions.parameters
    executor = job["pipelineSpec"]["deploymentSpec"]["executors"][component.executor_label][
        "container"
    ]
    assert any("components.anomalies_gate" in arg for arg in executor["args"]), executor
