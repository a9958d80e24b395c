"""Test-wide settings: the one Keras this project uses, and quiet TensorFlow logs.

Set before anything imports TensorFlow, exactly as the Makefile and the runners do.
"""

import os

from model import keras_env

keras_env.use_tf_keras()  # tf.keras == tf_keras (Keras 2), as TFT and TFMA need
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import shutil  # noqa: E402

import pytest  # noqa: E402

from tests.helpers import (  # noqa: E402
    run_pipeline,
    small_spec,
    tiny_train_options,
)


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


# ---------------------------------------------------------------- one worker per shared run

# Session fixtures that run a pipeline or train: `make test` runs the suite on several pytest-xdist
# workers (--dist loadgroup), and every test that inspects one of these runs goes to the same
# worker, so the run happens once. First listed wins where a test uses two.
SHARED_RUNS = ("pipeline_run", "tiny_converted", "exported_models", "swin_t_checkpoints")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config, items):
    """Under xdist, groups each test with the others that share its expensive fixtures (a
    SHARED_RUNS one, else those its own module defines for several tests: module- or
    session-scoped, built once per worker that runs the module's tests), and puts the groups
    that run TFX components (marked slow) first, so that the longest work does not start last
    (the Makefile turns off xdist's own ordering by group size)."""
    if not getattr(config.option, "loadgroup", False):  # xdist's --dist loadgroup
        return
    groups = {}
    for item in items:
        group = next((name for name in SHARED_RUNS if name in item.fixturenames), None)
        definitions = getattr(item, "_fixtureinfo", None)  # pytest's own; no public API
        if group is None and definitions is not None:
            for name in item.fixturenames:
                defs = definitions.name2fixturedefs.get(name)
                local = defs and defs[-1].func.__module__ == item.module.__name__
                if local and defs[-1].scope != "function":
                    group = item.module.__name__
                    break
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
        groups[item.nodeid] = group or item.nodeid
    slow = {groups[item.nodeid] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: groups[item.nodeid] not in slow)  # stable: else as collected


# ---------------------------------------------------------------- the whole pipeline, once


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
