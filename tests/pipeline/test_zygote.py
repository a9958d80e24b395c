"""A command forked from the zygote behaves as the same `python -m` command run fresh: output,
exit status, environment, cwd, argv, threads joined and atexit handlers run at the end."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.pipeline import kfp_launcher, zygote

_PROGRAM = """
import atexit, json, os, sys, threading, time
atexit.register(lambda: print("atexit ran"))
print("argv", sys.argv[1:], "cwd", os.getcwd(), "path0", sys.path[0])
print("env", sorted(k for k in os.environ if k.startswith("PROBE_")), os.environ.get("PROBE_A"))
print("main", __name__, os.path.basename(sys.argv[0]))
print("left by an earlier command", hasattr(json, "marked"))
json.marked = True
os.system("echo from a shell child")
threading.Thread(target=lambda: (time.sleep(0.2), print("thread done"))).start()
print("to stderr", file=sys.stderr)
mode = sys.argv[1]
if mode == "exit3":
    sys.exit(3)
if mode == "exit-text":
    sys.exit("bye")
if mode == "raise":
    raise ValueError("boom")
if mode == "kill":
    os.kill(os.getpid(), 9)
"""


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zygote")
    (folder / "probe.py").write_text(_PROGRAM)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(kfp_launcher.REPO_ROOT)}
    started = zygote.Zygote(["json"], env, folder)
    yield started, env, folder
    started.close()
    assert started._process.returncode == 0  # ended, not left behind


def _lines(text: str) -> list[str]:
    """The output's lines, in order within each stream; traceback frames (which differ by the
    runner's own frames) left out."""
    return sorted(line for line in text.splitlines() if not line.startswith(" "))


@pytest.mark.parametrize("mode", ["ok", "exit3", "exit-text", "raise", "kill"])
def test_a_forked_command_is_the_fresh_command(warm, mode):
    started, env, folder = warm
    env = {**env, "PROBE_A": "1", "PROBE_B": mode}
    process = started.start("probe", [mode], env, folder)
    output = process.stdout.read()
    returncode = process.wait()
    fresh = subprocess.run(
        [sys.executable, "-m", "probe", mode],
        env=env,
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert returncode == fresh.returncode == {"exit3": 3, "kill": -9}.get(mode, int(mode != "ok"))
    assert _lines(output) == _lines(fresh.stdout)
    if mode != "kill":
        assert "atexit ran" in output and "thread done" in output
        assert "left by an earlier command False" in output


def test_a_command_read_at_import_elsewhere_is_refused(warm):
    started, env, folder = warm
    with pytest.raises(ValueError, match="import-time environment"):
        started.start("probe", ["ok"], {**env, "TF_CPP_MIN_LOG_LEVEL": "0"}, folder)


def test_threads_alive_after_the_imports_keep_the_zygote_from_serving(tmp_path):
    (tmp_path / "threaded.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True)"
        ".start()\n"
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(kfp_launcher.REPO_ROOT)}
    with pytest.raises(RuntimeError, match="did not start.*threads"):
        zygote.Zygote(["threaded"], env, tmp_path)
    started = zygote.Zygote(["json"], env, tmp_path)  # a command's own preload: the same
    try:
        with pytest.raises(RuntimeError, match="did not fork.*threads"):
            started.start("json.tool", [], env, tmp_path, preload=["threaded"])
    finally:
        started.close()
