"""Which videos a data set holds: UCF101's list files, or any folder-per-class collection.

Listing never decodes. A problem found while listing (a listed file that is absent, a class not in
classInd) stays attached to its record, so ingest reports every listed video exactly once.
Paths go through data.storage, so a data root may be local or a bucket (gs://, s3://).
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
import re

from data import storage

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".ogv")
VIDEOS_DIR = "UCF-101"
LISTS_DIR = "ucfTrainTestlist"
TRAIN, EVAL = "train", "eval"
SPLITS = (TRAIN, EVAL)
# UCF101 names clips v_<Class>_gXX_cYY: gXX is one actor/scene, cYY a clip of it.
_CLIP_SUFFIX = re.compile(r"(_g\d+)_c\d+$")


class DataLayoutError(ValueError):
    """The data root is neither a UCF101 tree nor a folder-per-class video set."""


@dataclasses.dataclass(frozen=True)
class VideoRecord:
    """One listed video. label is 0-based (-1 if unknown); error says why it is unusable."""

    path: str
    label: int
    label_name: str
    video_id: str
    group: str
    split: str
    error: str = ""


@dataclasses.dataclass(frozen=True)
class VideoListing:
    class_names: tuple[str, ...]  # label order
    records: tuple[VideoRecord, ...]
    layout: str  # "ucf101" or "folders"

    def split(self, name: str) -> list[VideoRecord]:
        return [r for r in self.records if r.split == name]


def stem(path: str) -> str:
    return posixpath.splitext(posixpath.basename(path.replace("\\", "/")))[0]


def group_of(video_id: str) -> str:
    """Clips of one group share actor and scene: `v_Class_g08_c01` -> `v_Class_g08`.

    Without a _gXX_cYY token (HMDB51, your own videos) every file is its own group.
    """
    return _CLIP_SUFFIX.sub(r"\1", video_id)


def hash_split(group: str, eval_fraction: float) -> str:
    """A stable train/eval choice per group: the same on every machine, run and Python."""
    bucket = int.from_bytes(hashlib.sha256(group.encode()).digest()[:8], "big") / 2**64
    return EVAL if bucket < eval_fraction else TRAIN


def read_class_index(path: str) -> tuple[str, ...]:
    """classInd.txt ("1 ApplyEyeMakeup" per line) -> class names in 0-based label order."""
    names: dict[int, str] = {}
    with storage.open(path, "r") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[0].isdigit():
                raise DataLayoutError(f"{path}:{lineno}: expected '<index> <ClassName>': {line!r}")
            names[int(parts[0])] = parts[1]
    if sorted(names) != list(range(1, len(names) + 1)):
        raise DataLayoutError(f"{path}: class indices must be 1..N, got {sorted(names)}")
    return tuple(names[i] for i in range(1, len(names) + 1))


def _read_list(path: str) -> list[tuple[str, int | None]]:
    """trainlist ("Class/v_..avi 1") or testlist ("Class/v_..avi") -> (relative path, label)."""
    entries = []
    with storage.open(path, "r") as f:
        for line in f:
            parts = line.split()
            if parts:
                label = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
                entries.append((parts[0].replace("\\", "/"), label))
    return entries


def find_layout(data_root: str) -> tuple[str, str | None]:
    """(videos dir, lists dir or None): a root holding UCF-101/ and ucfTrainTestlist/, UCF-101/
    itself with the lists beside it, or a plain folder-per-class set."""
    root = data_root.rstrip("/")
    if not storage.isdir(root):
        raise DataLayoutError(f"data root {data_root!r} is not a directory")
    for videos, lists in (
        (posixpath.join(root, VIDEOS_DIR), posixpath.join(root, LISTS_DIR)),
        (root, posixpath.join(root, LISTS_DIR)),
        (root, posixpath.join(posixpath.dirname(root), LISTS_DIR)),
    ):
        if storage.isdir(videos) and storage.exists(posixpath.join(lists, "classInd.txt")):
            return videos, lists
    return root, None


def _files_by_lowercase(videos_dir: str, class_name: str, cache: dict) -> dict[str, str]:
    # UCF101's lists and folders disagree in case for one class (HandStandPushups).
    if class_name not in cache:
        folder = posixpath.join(videos_dir, class_name)
        names = storage.listdir(folder) if storage.isdir(folder) else []
        cache[class_name] = {n.lower(): posixpath.join(folder, n) for n in names}
    return cache[class_name]


def list_ucf101(videos_dir: str, lists_dir: str, split: int = 1) -> VideoListing:
    """Official split `split` (1, 2 or 3): trainlist0N is train, testlist0N is eval."""
    if split not in (1, 2, 3):
        raise ValueError(f"UCF101 split must be 1, 2 or 3, got {split}")
    class_names = read_class_index(posixpath.join(lists_dir, "classInd.txt"))
    label_of = {name: i for i, name in enumerate(class_names)}
    label_of_lower = {name.lower(): i for i, name in enumerate(class_names)}
    folders: dict[str, dict[str, str]] = {}
    records = []
    for split_name, list_name in ((TRAIN, "trainlist"), (EVAL, "testlist")):
        list_path = posixpath.join(lists_dir, f"{list_name}0{split}.txt")
        if not storage.exists(list_path):
            raise DataLayoutError(f"missing list file {list_path}")
        for rel, listed_label in _read_list(list_path):
            class_name, _, file_name = rel.rpartition("/")
            label = label_of.get(class_name, label_of_lower.get(class_name.lower(), -1))
            path = posixpath.join(videos_dir, rel)
            error = ""
            if label < 0:
                error = f"class {class_name!r} is not in classInd.txt"
            elif listed_label is not None and listed_label != label + 1:
                error = (
                    f"listed label {listed_label} but classInd says {label + 1} for {class_name}"
                )
            else:
                found = _files_by_lowercase(videos_dir, class_name, folders).get(file_name.lower())
                path = found or path
                error = "" if found else "listed file is missing"
            video_id = stem(rel)
            name = class_names[label] if label >= 0 else class_name
            records.append(
                VideoRecord(path, label, name, video_id, group_of(video_id), split_name, error)
            )
    return VideoListing(class_names, tuple(records), "ucf101")


def class_folders(videos_dir: str) -> tuple[str, ...]:
    """The sorted sub-folder names of a folder-per-class set."""
    return tuple(
        sorted(
            d.rstrip("/")
            for d in storage.listdir(videos_dir)
            if storage.isdir(posixpath.join(videos_dir, d))
        )
    )


def list_folders(
    videos_dir: str, eval_fraction: float = 0.3, class_names: tuple[str, ...] | None = None
) -> VideoListing:
    """Folder-per-class: classes are the sorted sub-folder names (or `class_names`, a superset
    shared with other folders); splits hash the group."""
    present = class_folders(videos_dir)
    if not present:
        raise DataLayoutError(f"{videos_dir}: no class folders and no {LISTS_DIR}/classInd.txt")
    if class_names is None:
        class_names = present
    elif unknown := set(present) - set(class_names):
        raise DataLayoutError(f"{videos_dir}: class folders {sorted(unknown)} are not listed")
    records = []
    for label, name in enumerate(class_names):
        if name not in present:
            continue
        for file in sorted(storage.listdir(posixpath.join(videos_dir, name))):
            if not file.lower().endswith(VIDEO_EXTENSIONS):
                continue
            video_id = stem(file)
            group = group_of(video_id)
            path = posixpath.join(videos_dir, name, file)
            records.append(
                VideoRecord(
                    path, label, name, video_id, group, hash_split(f"{name}/{group}", eval_fraction)
                )
            )
    return VideoListing(class_names, tuple(records), "folders")


def class_index_of(data_root: str) -> tuple[str, ...] | None:
    """The class names of a UCF101-layout root's classInd.txt; None for a folder-per-class set.

    A runner compares them with the official list to pick UCF101's curated schema.
    """
    _, lists_dir = find_layout(data_root)
    return read_class_index(posixpath.join(lists_dir, "classInd.txt")) if lists_dir else None


def list_videos(
    data_root: str,
    split: int = 1,
    eval_fraction: float = 0.3,
    class_names: tuple[str, ...] | None = None,
) -> VideoListing:
    """Every video under `data_root`: by UCF101's lists when present, else by class folders
    (`class_names`: the classes of several such folders, data/spans.py)."""
    videos_dir, lists_dir = find_layout(data_root)
    if lists_dir:
        return list_ucf101(videos_dir, lists_dir, split)
    return list_folders(videos_dir, eval_fraction, class_names)
