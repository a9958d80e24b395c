"""Where benchmarks write, and the keys every result shares, so results can be compared.

Each benchmark writes `benchmarks/results/<name>.json` with `write(name, results)`, which adds
the fixed keys: `benchmark`, `date`, `machine` ({cpus, memory_gib, processor}). The machine's
load is recorded in the results as `load_1min` (one value, or [at start, at end]) wherever a
measurement is taken: the machine may be shared, and wall times only mean something beside it.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

DIR = Path(__file__).resolve().parent / "results"


def path(name: str) -> Path:
    return DIR / f"{name}.json"


def load_1min() -> float:
    return round(os.getloadavg()[0], 2)


def machine() -> dict:
    import psutil

    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30),
        "processor": platform.processor() or platform.machine(),
    }


def write(name: str, results: dict, output: str | Path | None = None) -> Path:
    """`results` with the fixed keys first, as JSON at `output` (default: path(name))."""
    output = Path(output or path(name))
    output.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "date": time.strftime("%Y-%m-%d"), "machine": machine()}
    output.write_text(json.dumps(record | results, indent=2) + "\n")
    return output
