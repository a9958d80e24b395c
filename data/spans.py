"""Arriving data as spans: numbered or dated folders under a data root (TFX's convention).

    <data-root>/span-0/<Class>/*.avi, <data-root>/span-1/<Class>/*.avi    pattern "span-{SPAN}"
    <data-root>/2026-11-30/UCF-101/..., .../ucfTrainTestlist/            pattern "{YYYY}-{MM}-{DD}"

Each span is a data set of its own, in either layout data/video_sets.py lists. A data root in which
no folder matches the pattern is one span, number 0: UCF101 with its official lists, or a
folder-per-class set. Dated spans are numbered as TFX numbers them: days since 1970-01-01. A
pattern may name nested folders ("{YYYY}/{MM}/{DD}").

Labels must mean the same in every span: UCF101 layouts carry their classInd.txt (every span's
must agree); in folder-per-class spans the classes are the sorted class folders of all spans.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import posixpath
import re

from data import storage, video_sets

SPAN_SPEC = "{SPAN}"
DATE_SPECS = ("{YYYY}", "{MM}", "{DD}")
DEFAULT_PATTERN = "span-{SPAN}"
_GROUPS = {"{SPAN}": r"(?P<span>\d+)", "{YYYY}": r"(?P<y>\d{4})", "{MM}": r"(?P<m>\d{2})"}
_GROUPS["{DD}"] = r"(?P<d>\d{2})"
_EPOCH = datetime.date(1970, 1, 1)


class SpanLayoutError(ValueError):
    """A span pattern that cannot be used, or span folders that disagree."""


@dataclasses.dataclass(frozen=True)
class Span:
    number: int
    path: str  # the span's folder: a data root data/video_sets.py lists


def pattern_regex(pattern: str) -> re.Pattern:
    """The regular expression of a span pattern's relative folder path."""
    has_span = SPAN_SPEC in pattern
    dates = [spec in pattern for spec in DATE_SPECS]
    if has_span == any(dates) or (any(dates) and not all(dates)):
        raise SpanLayoutError(
            f"span pattern {pattern!r}: use {SPAN_SPEC} (a number) or all of "
            f"{', '.join(DATE_SPECS)} (a date), not both"
        )
    if pattern.startswith("/") or ".." in pattern.split("/"):
        raise SpanLayoutError(f"span pattern {pattern!r}: a folder path relative to the data root")
    parts = re.split(r"(\{SPAN\}|\{YYYY\}|\{MM\}|\{DD\})", pattern)
    return re.compile("".join(_GROUPS.get(p, re.escape(p)) for p in parts))


def _number(match: re.Match) -> int:
    if match.groupdict().get("span") is not None:
        return int(match["span"])
    try:
        date = datetime.date(int(match["y"]), int(match["m"]), int(match["d"]))
    except ValueError:
        return -1
    return (date - _EPOCH).days


def _folders(root: str, depth: int) -> list[str]:
    """Relative paths of the folders `depth` levels below `root`."""
    level = [""]
    for _ in range(depth):
        level = [
            posixpath.join(rel, name)
            for rel in level
            for name in storage.listdir(posixpath.join(root, rel) if rel else root)
            if storage.isdir(posixpath.join(root, rel, name))
        ]
    return level


def list_spans(data_root: str, pattern: str = DEFAULT_PATTERN) -> list[Span]:
    """The spans under `data_root`, by number; the root itself as span 0 when none matches."""
    root = data_root.rstrip("/")
    if not storage.isdir(root):
        raise video_sets.DataLayoutError(f"data root {data_root!r} is not a directory")
    regex = pattern_regex(pattern)
    found: dict[int, str] = {}
    for rel in _folders(root, pattern.count("/") + 1):
        match = regex.fullmatch(rel)
        if not match:
            continue
        number = _number(match)
        if number < 0:
            raise SpanLayoutError(f"{posixpath.join(root, rel)}: not a date ({pattern!r})")
        if number in found:
            raise SpanLayoutError(
                f"two folders are span {number}: {found[number]} and {posixpath.join(root, rel)}"
            )
        found[number] = posixpath.join(root, rel)
    if not found:
        return [Span(0, root)]
    return [Span(n, found[n]) for n in sorted(found)]


def fingerprint(span_path: str) -> str:
    """sha256 over every file under the span (relative path, size, modification time): changes
    when a video is added, removed or rewritten."""
    lines = [
        f"{rel}\t{size}\t{mtime}" for rel, (size, mtime) in sorted(storage.files(span_path).items())
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def class_names_of(spans: list[Span]) -> tuple[str, ...] | None:
    """The classes every span is listed with: UCF101 layouts' common classInd (None: each
    span's own lists decide), else the sorted union of the spans' class folders."""
    indices = {s.path: video_sets.class_index_of(s.path) for s in spans}
    if any(indices.values()):
        distinct = {names for names in indices.values()}
        if len(distinct) > 1:
            raise SpanLayoutError(
                "spans disagree on the classes (classInd.txt or class folders): "
                + "; ".join(
                    f"{path}: {len(names or ())} classes" for path, names in indices.items()
                )
            )
        return None
    return tuple(sorted({name for s in spans for name in video_sets.class_folders(s.path)}))


def list_span_videos(
    spans: list[Span],
    all_spans: list[Span] | None = None,
    split: int = 1,
    eval_fraction: float = 0.3,
) -> video_sets.VideoListing:
    """Every video of `spans`, one listing; labels from the classes of `all_spans` (default:
    `spans`), so a span that lacks a class numbers the others as every span does."""
    class_names = class_names_of(all_spans or spans)
    listings = [video_sets.list_videos(s.path, split, eval_fraction, class_names) for s in spans]
    names = {listing.class_names for listing in listings}
    if len(names) > 1:
        raise SpanLayoutError(f"spans {[s.number for s in spans]} list different classes")
    return video_sets.VideoListing(
        listings[0].class_names,
        tuple(r for listing in listings for r in listing.records),
        listings[0].layout,
    )
