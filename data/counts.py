"""How many examples each split holds, written beside the examples when they are made.

    <examples>/Split-train/*.gz  <examples>/Split-eval/*.gz  <examples>/counts.json

`counts.json` ({"train": 404, "eval": 101}) lets the Trainer size its epochs without reading the
splits first (UCF101: ~20 GB). Ingest (`python -m data.ingest`) and VideoExampleGen write it; it
sits outside the split folders, so nothing reading `Split-*/*` as TFRecords sees it.
"""

from __future__ import annotations

import json
import posixpath

COUNTS_FILE = "counts.json"


def _gfile():
    import tensorflow as tf  # here: the ingest CLI's Beam workers never need it

    return tf.io.gfile


def write(examples_dir: str, counts: dict[str, int]) -> str:
    path = posixpath.join(examples_dir, COUNTS_FILE)
    with _gfile().GFile(path, "w") as f:
        json.dump(counts, f, sort_keys=True)
    return path


def examples_dir_of(split_pattern: str) -> str:
    """`<examples>/Split-train/*` (a Trainer's file pattern) -> `<examples>`."""
    return posixpath.dirname(posixpath.dirname(split_pattern.rstrip("/")))


def split_name_of(split_pattern: str) -> str:
    folder = posixpath.basename(posixpath.dirname(split_pattern.rstrip("/")))
    return folder.removeprefix("Split-")


def read(split_patterns: str | list[str]) -> int | None:
    """Examples matched by the split patterns, from each artifact's counts.json; None when one
    lacks it (examples from elsewhere)."""
    patterns = [split_patterns] if isinstance(split_patterns, str) else split_patterns
    total = 0
    for pattern in patterns:
        path = posixpath.join(examples_dir_of(pattern), COUNTS_FILE)
        if not _gfile().exists(path):
            return None
        with _gfile().GFile(path) as f:
            counts = json.load(f)
        split = split_name_of(pattern)
        if split not in counts:
            return None
        total += int(counts[split])
    return total
