"""Where exported models live: a SavedModel folder, and a serving directory's versions.

TF Serving's rule, which the Pusher, LatestPushedModel, warm starts and `python -m serving` all
follow: `<serving_dir>/<model_name>/<version>/saved_model.pb`, version a number, the newest
served. Local, gs:// or s3:// paths (data/storage.py). No TensorFlow import at module level.
"""

from __future__ import annotations

import os

from data import storage

SAVED_MODEL = "saved_model.pb"


def holds_saved_model(path: str | None) -> bool:
    """Whether `path` (local, gs:// or s3://: data.storage) holds a SavedModel. TFX's Pusher
    copies saved_model.pb last, so in a pushed version folder it also marks the copy complete."""
    return bool(path) and storage.exists(os.path.join(path, SAVED_MODEL))


def complete_versions(base_dir: str) -> list[int]:
    """The version folders of a serving directory, ascending: numeric names holding
    saved_model.pb (TF Serving's rule; the Pusher's copy is complete once that file is there).
    Local, gs:// or s3:// (data.storage); [] when `base_dir` does not exist."""
    if not storage.isdir(base_dir):
        return []
    names = storage.listdir(base_dir)
    return sorted(
        int(n) for n in names if n.isdigit() and holds_saved_model(os.path.join(base_dir, n))
    )
