"""Readable local runs: which component runs, for how long, and the project's own messages.

Third-party noise (TensorFlow's C++ start-up lines, Google API Python-version notices, Beam and
TFX INFO/WARNING chatter) is hidden unless verbose; errors always show.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import warnings

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_COMPONENT = re.compile(r"Component (\S+) is (running|finished)\.")


def duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class ProgressHandler(logging.Handler):
    """Prints component start/finish with timings, this repository's INFO+ records, and
    anyone's ERROR+ records."""

    def __init__(self, stream=None):
        super().__init__(logging.INFO)
        self._stream = stream or sys.stdout
        self._t0 = time.time()
        self._started: dict[str, float] = {}

    def _print(self, text: str) -> None:
        print(f"[{duration(time.time() - self._t0):>6}] {text}", file=self._stream, flush=True)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed third-party record must not break the run
            return
        match = _COMPONENT.match(message)
        if match:
            name, state = match.groups()
            if state == "running":
                self._started[name] = time.time()
                self._print(f"{name} ...")
            else:
                took = time.time() - self._started.pop(name, time.time())
                self._print(f"{name} done ({duration(took)})")
        elif record.pathname.startswith(_REPO) and ".venv" not in record.pathname:
            self._print("  " + message.splitlines()[0])
        elif record.levelno >= logging.ERROR:
            self._print(f"  {record.levelname}: {message.splitlines()[0]}")


def configure(verbose: bool) -> None:
    """Call before TensorFlow, TFX or Beam are imported."""
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        logging.basicConfig(level=logging.INFO)
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # C++ INFO/WARNING/ERROR lines (CUDA factories)
    # Here and in Beam's worker processes (they inherit the environment).
    os.environ["PYTHONWARNINGS"] = (
        "ignore::FutureWarning,ignore::DeprecationWarning,ignore::UserWarning"
    )
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    root = logging.getLogger()
    root.handlers[:] = [ProgressHandler()]
    root.setLevel(logging.INFO)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logging.use_python_logging(quiet=True)  # absl records reach the root handler only
    # TensorFlow's own Python logger has its own handler; route it through ours.
    tf_logger = logging.getLogger("tensorflow")
    tf_logger.handlers[:] = []
    tf_logger.propagate = True
