"""`make run`'s progress lines (pipeline/progress.py) come from TFX's own log text: the lines it
parses are recorded here from the installed LocalDagRunner, so a TFX that rewords them fails
this test instead of silently losing the progress."""

from __future__ import annotations

import inspect
import io
import logging
import re

from pipeline import progress


def _record(message: str, *args, level=logging.INFO, pathname="/site-packages/x.py"):
    return logging.LogRecord("absl", level, pathname, 1, message, args, None)


def test_the_installed_runner_logs_the_lines_progress_parses():
    from tfx.orchestration.local import local_dag_runner

    source = inspect.getsource(local_dag_runner)
    formats = re.findall(r"logging\.info\('(Component %s is \w+\.)', node_id\)", source)
    assert formats == ["Component %s is running.", "Component %s is finished."]
    for text in formats:
        assert progress._COMPONENT.match(text % "Trainer")


def test_component_start_and_end_with_timings_and_the_projects_messages():
    out = io.StringIO()
    handler = progress.ProgressHandler(out)
    handler.emit(_record("Component %s is running.", "Trainer"))
    handler.emit(_record("a third-party INFO line"))
    handler.emit(_record("training on %d clips", 8, pathname=progress._REPO + "/model/train.py"))
    handler.emit(_record("disk full\nmore", level=logging.ERROR))
    handler.emit(_record("Component %s is finished.", "Trainer"))
    handler.emit(_record("bad %d format", "x"))  # a malformed record is skipped, not raised
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == [
        "Trainer ...",
        "  training on 8 clips",
        "  ERROR: disk full",
        "Trainer done (0s)",
    ]


def test_durations():
    assert [progress.duration(s) for s in (0.4, 59, 61, 3600)] == ["0s", "59s", "1m01s", "60m00s"]
