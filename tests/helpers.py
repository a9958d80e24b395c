"""Helpers shared by tests (plain functions: pytest advises against importing conftest)."""

from __future__ import annotations

import dataclasses
import pathlib
import shutil


def tiny_spec():
    """12 real .avi clips per set: 2 of the embedded classes, 3 groups (split 1: 8 train,
    4 eval), 16 frames of 32x32."""
    from data import synthetic

    return dataclasses.replace(
        synthetic.SPEC,
        classes=("ShiftLeft", "ShiftRight"),
        groups=3,
        clips_per_group=2,
        num_frames=16,
        height=32,
        width=32,
    )


def add_span(data_root: pathlib.Path, number: int) -> pathlib.Path:
    """Arriving data: a tiny set in UCF101's layout as `<data_root>/span-<number>/` (each span
    its own clips: the seed is the span's number)."""
    from data import synthetic

    return synthetic.generate(data_root / f"span-{number}", number, tiny_spec())


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


class LoopbackServer:
    """A stand-in's HTTP server on 127.0.0.1 (a free port), served from a background thread while
    the stand-in is used as a context manager: `with StandIn(...) as api: ... api.url ...`."""

    def _listen(self, handler) -> None:
        import http.server

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self):
        import threading

        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
