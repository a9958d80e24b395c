"""Test-wide settings: the one Keras this project uses, and quiet TensorFlow logs.

Set before anything imports TensorFlow, exactly as the Makefile and the runners do.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tf.keras == tf_keras (Keras 2), as TFT and TFMA need.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import shutil  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """The embedded data set (real .avi files, UCF101 layout), generated once per session."""
    from data import synthetic

    return synthetic.generate(tmp_path_factory.mktemp("synthetic") / "data", seed=0)


@pytest.fixture(scope="session")
def broken_root(synthetic_root, tmp_path_factory):
    """A copy of the embedded set with one video of each bad kind.

    Returns (root, {video_id: expected start of the reason}).
    """
    root = tmp_path_factory.mktemp("broken") / "data"
    shutil.copytree(synthetic_root, root)
    videos, lists = root / "UCF-101", root / "ucfTrainTestlist"
    bad = {}

    def victim(class_name, group, clip):
        video_id = f"v_{class_name}_g{group:02d}_c{clip:02d}"
        return video_id, videos / class_name / f"{video_id}.avi"

    video_id, path = victim("ShiftLeft", 3, 1)
    path.unlink()
    bad[video_id] = "listed file is missing"
    video_id, path = victim("ShiftRight", 4, 2)
    path.write_bytes(b"")
    bad[video_id] = "empty file"
    video_id, path = victim("ShiftUp", 5, 3)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 3 // 4])
    bad[video_id] = "truncated"
    video_id, path = victim("PulseSlow", 1, 2)
    path.write_bytes(bytes(range(256)) * 40)
    bad[video_id] = "undecodable"
    # A class that classInd does not know, with a real video on disk.
    (videos / "Juggle").mkdir()
    shutil.copy(
        videos / "PulseFast" / "v_PulseFast_g03_c01.avi", videos / "Juggle" / "v_Juggle_g03_c01.avi"
    )
    with open(lists / "trainlist01.txt", "a") as f:
        f.write("Juggle/v_Juggle_g03_c01.avi 7\r\n")
    bad["v_Juggle_g03_c01"] = "class 'Juggle' is not in classInd.txt"
    return root, bad


# ---------------------------------------------------------------- the whole pipeline, once


def small_spec():
    """The embedded set's classes and groups, 6 clips per group: 216 videos (144 train, 72 eval;
    enough for the tiny model to leave chance within the test's epochs)."""
    import dataclasses

    from data import synthetic

    return dataclasses.replace(synthetic.SPEC, clips_per_group=6)


# The pipeline's components with a curated schema (ImportSchemaGen), as create_pipeline lists them.
PIPELINE_COMPONENTS = (
    "NewSpans",
    "VideoExampleGen",
    "StatisticsGen",
    "ImportSchemaGen",
    "ExampleValidator",
    "AnomaliesGate",
    "RegisterSpans",
    "Transform",
    "TrainingPlan",
    "LatestPushedModel",
    "Trainer",
    "Evaluator",
    "Pusher",
)


def free_ports(n: int) -> list[int]:
    """n TCP ports on 127.0.0.1 that were free a moment ago (for TF_CONFIG clusters)."""
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def split_sizes() -> tuple[int, int]:
    """(train, eval) videos of small_spec(): split 1 tests groups 1 and 2 of 6."""
    spec = small_spec()
    per_group = len(spec.classes) * spec.clips_per_group
    return per_group * (spec.groups - 2), per_group * 2


EVAL_VIEWS = (3, 1)  # the test runs' multi-view evaluation: 3 clips of the 16-frame cover


def tiny_train_options(**changes):
    """The embedded set's training configuration, shortened for tests (seconds an epoch), and
    evaluated on EVAL_VIEWS so the shared runs exercise multi-view evaluation."""
    import dataclasses

    from pipeline import configs

    clips, crops = EVAL_VIEWS
    settings = {
        "epochs": 20,
        "batch_size": 8,
        "shuffle_buffer": 64,
        "eval_clips": clips,
        "eval_crops": crops,
        **changes,
    }
    return dataclasses.replace(configs.SYNTHETIC_TRAIN_OPTIONS, **settings)


def run_pipeline(root, data_root, min_accuracy: float, enable_cache: bool = False, **kwargs):
    """One LocalDagRunner run of create_pipeline; returns the paths a test inspects."""
    from tfx import v1 as tfx

    from pipeline import configs
    from pipeline.pipeline import create_pipeline

    paths = {
        "pipeline_root": str(root / "pipeline_root"),
        "metadata": str(root / "metadata.sqlite"),
        "serving_dir": str(root / "serving" / configs.MODEL_NAME),
        "data_root": str(data_root),
    }
    tfx.orchestration.LocalDagRunner().run(
        create_pipeline(
            pipeline_name="test-pipeline",
            pipeline_root=paths["pipeline_root"],
            data_root=paths["data_root"],
            serving_dir=paths["serving_dir"],
            ingest_options=configs.SYNTHETIC_INGEST_OPTIONS,
            train_options=kwargs.pop("train_options", None) or tiny_train_options(),
            min_accuracy=min_accuracy,
            schema_path=configs.SYNTHETIC_SCHEMA,
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                paths["metadata"]
            ),
            beam_pipeline_args=configs.SYNTHETIC_BEAM_PIPELINE_ARGS,  # in-process Beam
            enable_cache=enable_cache,
            **kwargs,
        )
    )
    return paths


def copy_with_new_class(source, data_root, new="Wave", like="ShiftUp"):
    """A copy of an embedded set at `data_root` with a seventh class `new` (`like`'s clips
    renamed), listed in classInd and split 1's lists: a label set the schema does not know."""
    shutil.copytree(source, data_root)
    videos, lists = data_root / "UCF-101", data_root / "ucfTrainTestlist"
    shutil.copytree(videos / like, videos / new)
    for f in (videos / new).iterdir():
        f.rename(f.with_name(f.name.replace(like, new)))
    with open(lists / "classInd.txt", "a") as f:
        f.write(f"7 {new}\r\n")
    with open(lists / "trainlist01.txt", "a") as train, open(lists / "testlist01.txt", "a") as test:
        for f in sorted((videos / new).iterdir()):
            if "_g01_" in f.name or "_g02_" in f.name:
                test.write(f"{new}/{f.name}\r\n")
            else:
                train.write(f"{new}/{f.name} 7\r\n")
    return data_root


@pytest.fixture(scope="session")
def small_synthetic_root(tmp_path_factory):
    from data import synthetic

    return synthetic.generate(tmp_path_factory.mktemp("small") / "data", 0, small_spec())


@pytest.fixture(scope="session")
def pipeline_run(small_synthetic_root, tmp_path_factory):
    """The whole pipeline on the small embedded set; a threshold of 0 blesses and pushes."""
    from pipeline import report

    root = tmp_path_factory.mktemp("pipeline")
    paths = run_pipeline(root, small_synthetic_root, min_accuracy=0.0)
    return {**paths, "report": report.collect(paths["metadata"])}  # before any later run


@pytest.fixture(scope="session")
def retrain_run(pipeline_run):
    """A second run on the same metadata (a scheduled retraining) whose threshold cannot be met.

    Caching reuses ExampleGen .. Transform (same inputs); the Trainer, told to train again on the
    data the served model was trained on, gets the model the first run pushed as base_model and
    the Evaluator compares against it.
    """
    import pathlib

    from pipeline import report

    root = pathlib.Path(pipeline_run["pipeline_root"]).parent
    since = report.newest_execution_id_at(pipeline_run["metadata"])
    paths = run_pipeline(
        root,
        pipeline_run["data_root"],
        min_accuracy=1.01,
        enable_cache=True,
        train_without_new_data=True,
        train_options=tiny_train_options(epochs=2),  # what is checked is where it starts
    )
    return {**paths, "since": since}


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-protocol server on loopback (moto's), reached over HTTP as boto3 reaches AWS S3
    or MinIO. Yields the environment a client needs (boto3's AWS_* variables)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "test-access-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret-key",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """This process (and the processes it starts) talks to s3_server; returns a boto3 client."""
    import boto3

    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    return boto3.client("s3")
