"""Warm starts for `python -m <module> args...` commands: a zygote (a fork server).

A step of the pipeline's image spends 6-9 s importing TensorFlow, TFX, TFMA, Beam... before it
does anything, every step again. The zygote is one long-lived process that imports the given
modules once, with the image's environment, then forks a child per command. The child is its own
process, as a fresh interpreter's would be:

- its environment is exactly the one given (os.environ replaced), its cwd the one given, and
  sys.path[0] that cwd, as `python -m` puts it;
- its stdout and stderr (fds 1 and 2, so C++ logging too) go to a pipe the caller reads;
- the module runs as `python -m` runs it (runpy.run_module, run_name "__main__", alter_sys);
- it ends as an interpreter ends: SystemExit's code (None 0, an int itself, anything else printed,
  1), an uncaught exception's traceback on stderr and 1; then non-daemon threads joined,
  atexit handlers run (the preloaded modules' and the command's own), streams flushed; a signal
  that kills it is reported as Popen reports it (-N).

What it does not reproduce: modules read their environment at import in the zygote, so values
read then (TF_CPP_MIN_LOG_LEVEL, TF_USE_LEGACY_KERAS, PYTHON*...) must be the same for every
child: callers key zygotes by them (IMPORT_TIME_ENV). Lines printed while importing appear once,
in the zygote's own log, not in each command's output. Children share the zygote's hash seed
(PYTHONHASHSEED) and its already-open file descriptors; numpy's global random state is reseeded
in each child (Python's `random` reseeds itself after a fork). stdin is /dev/null.

A command may name modules it will import (`preload`): the zygote imports them before forking,
once, so later commands find them imported too.

Fork with live threads is unsafe: the zygote refuses to serve when a Python thread other than
the main one is alive after its imports. (Native pools that libraries start at load time, idle
OpenBLAS workers and jemalloc's background thread, are fork-aware: pthread_atfork handlers.)

Protocol, over a socketpair: length-prefixed JSON; a request {"module", "args", "env", "cwd",
"preload"}
carries the write end of the output pipe (SCM_RIGHTS); replies {"pid"} then {"returncode"}. The
zygote exits when its socket closes (the caller ended, even killed), killing a child in flight.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

# Environment read when the interpreter starts or a module is imported: a zygote serves only
# children whose values of these are its own.
IMPORT_TIME_PREFIXES = ("PYTHON", "TF_CPP_", "LD_", "OMP_", "OPENBLAS_", "MKL_", "CUDA_", "GRPC_")
IMPORT_TIME_NAMES = ("TF_USE_LEGACY_KERAS", "TF_ENABLE_ONEDNN_OPTS", "KERAS_BACKEND")
_HEADER = struct.Struct("!Q")


def import_time_env(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The part of `env` read at start-up or import (a zygote's key)."""
    return tuple(
        sorted(
            (k, v)
            for k, v in env.items()
            if k.startswith(IMPORT_TIME_PREFIXES) or k in IMPORT_TIME_NAMES
        )
    )


class _Channel:
    """Length-prefixed JSON messages over a stream socket, file descriptors riding along."""

    def __init__(self, sock: socket.socket):
        self.sock, self._buffer, self._fds = sock, b"", []

    def send(self, message: dict, fds: Sequence[int] = ()) -> None:
        data = json.dumps(message).encode()
        data = _HEADER.pack(len(data)) + data
        sent = socket.send_fds(self.sock, [data[:4096]], list(fds)) if fds else 0
        self.sock.sendall(data[sent:])

    def receive(self) -> tuple[dict | None, list[int]]:
        """(the next message, the fds passed since the last one); (None, []) at end of stream."""
        while True:
            if len(self._buffer) >= _HEADER.size:
                end = _HEADER.size + _HEADER.unpack_from(self._buffer)[0]
                if len(self._buffer) >= end:
                    message = json.loads(self._buffer[_HEADER.size : end])
                    self._buffer, fds, self._fds = self._buffer[end:], self._fds, []
                    return message, fds
            data, fds, _, _ = socket.recv_fds(self.sock, 1 << 20, 4)
            self._fds += fds
            if not data:
                if self._buffer:
                    raise EOFError("the zygote's socket closed mid-message")
                return None, []
            self._buffer += data

    def close(self) -> None:
        self.sock.close()


class Process:
    """A forked command, read as a subprocess.Popen with stdout=PIPE, stderr=STDOUT, text=True."""

    def __init__(self, zygote: Zygote, pid: int, stdout):
        self._zygote, self.pid, self.stdout = zygote, pid, stdout
        self.returncode: int | None = None

    def wait(self) -> int:
        if self.returncode is None:
            reply, _ = self._zygote._channel.receive()
            if reply is None:
                raise RuntimeError(f"the zygote ended while {self.pid} ran: {self._zygote.log}")
            self.returncode = reply["returncode"]
            self._zygote._busy = False
            self.stdout.close()
        return self.returncode


class Zygote:
    """A process that imported `preload` with environment `env`, forking a child per command."""

    def __init__(self, preload: Sequence[str], env: Mapping[str, str], cwd: str | os.PathLike):
        self.preload, self.key = tuple(preload), import_time_env(env)
        ours, theirs = socket.socketpair()
        log_fd, self.log = tempfile.mkstemp(prefix="zygote-", suffix=".log")
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(theirs.fileno()), *self.preload],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            pass_fds=[theirs.fileno()],
        )
        os.close(log_fd)
        theirs.close()
        self._channel, self._busy = _Channel(ours), False
        ready, _ = self._channel.receive()
        log = Path(self.log).read_text(errors="replace")[-4000:]
        if not ready or not ready.get("ready"):
            self.close()  # removes the log: its end goes into the error
            raise RuntimeError(f"the zygote did not start ({ready}); its log ends:\n{log}")

    def start(
        self,
        module: str,
        args: Sequence[str],
        env: Mapping[str, str],
        cwd: str | os.PathLike,
        preload: Sequence[str] = (),
    ) -> Process:
        """Forks `python -m module args...` with exactly `env` and `cwd`; `preload`: modules
        the command will import, imported in the zygote first (once) when they import there."""
        if import_time_env(env) != self.key:
            raise ValueError("the command's import-time environment is not the zygote's")
        if self._busy:
            raise RuntimeError("the zygote runs one command at a time")
        read, write = os.pipe()
        try:
            request = {"module": module, "args": list(args), "env": dict(env), "cwd": str(cwd)}
            request["preload"] = list(preload)
            self._channel.send(request, [write])
        finally:
            os.close(write)
        stdout = os.fdopen(read, "r", errors="replace")
        reply, _ = self._channel.receive()
        if reply is None or "pid" not in reply:
            stdout.close()
            raise RuntimeError(f"the zygote did not fork ({reply}); its log: {self.log}")
        self._busy = True
        return Process(self, reply["pid"], stdout)

    def close(self) -> None:
        """Ends the zygote (closing its socket is its signal) and removes its log."""
        self._channel.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        Path(self.log).unlink(missing_ok=True)


# ---------------------------------------------------------------------- the zygote's side


def _exit_code(code) -> int:
    """What the interpreter makes of SystemExit's code (Py_Exit via handle_system_exit)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _child(request: dict, out: int) -> None:
    """In the forked child: become the command's process, run it, exit as an interpreter does."""
    code = 1
    try:
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[0] = request["cwd"]  # `python -m`'s first entry: the cwd
        sys.argv = [request["module"], *request["args"]]  # run_module sets argv[0]
        if "numpy" in sys.modules:  # a fresh interpreter's numpy seeds from the OS
            sys.modules["numpy"].random.seed()
        import runpy

        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            code = _exit_code(exit_.code)
        except BaseException:
            kind, error, trace = sys.exc_info()
            sys.excepthook(kind, error, trace.tb_next)  # from runpy down, as `python -m` shows
            code = 1
        # Py_FinalizeEx's order: join non-daemon threads (and threading's own exit hooks, which
        # concurrent.futures uses), then atexit handlers, then flush the standard streams.
        threading._shutdown()
        import atexit

        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 (the interpreter ignores it too, and exits)
                code = code or 120
        os._exit(code & 0xFF)  # as the C exit status keeps it (sys.exit(-1): 255)


def _serve(channel: _Channel) -> None:
    sock = channel.sock
    while True:
        request, fds = channel.receive()
        if request is None:
            return
        (out,) = fds
        for module in request["preload"]:
            # A module that fails here fails again in the command, with its output.
            with contextlib.suppress(Exception):
                __import__(module)
        if threads := _threads():
            os.close(out)
            channel.send({"threads": threads})
            raise SystemExit(f"threads alive after the imports, fork is unsafe: {threads}")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            sock.close()
            _child(request, out)
        os.close(out)
        channel.send({"pid": pid})
        pidfd = os.pidfd_open(pid)
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            selector.register(pidfd, selectors.EVENT_READ)
            events = selector.select()
        os.close(pidfd)
        if any(key.fileobj is sock for key, _ in events) and not sock.recv(1, socket.MSG_PEEK):
            os.kill(pid, signal.SIGKILL)  # the caller is gone
            os.waitpid(pid, 0)
            return
        _, status = os.waitpid(pid, 0)
        channel.send({"returncode": os.waitstatus_to_exitcode(status)})


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t is not threading.main_thread()]


def main(argv: Sequence[str]) -> None:
    channel = _Channel(socket.socket(fileno=int(argv[0])))
    for module in argv[1:]:
        __import__(module)
        # Run later as __main__: a fresh `python -m` has no copy of it under its own name (and
        # runpy warns when there is one); what it imported stays.
        sys.modules.pop(module)
        package, _, name = module.rpartition(".")
        if package and hasattr(sys.modules[package], name):
            delattr(sys.modules[package], name)
    if threads := _threads():
        channel.send({"ready": False, "threads": threads})
        raise SystemExit(f"threads alive after the imports, fork is unsafe: {threads}")
    channel.send({"ready": True})
    _serve(channel)


if __name__ == "__main__":
    main(sys.argv[1:])
