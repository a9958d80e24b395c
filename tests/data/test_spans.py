"""Spans under a data root: numbered or dated folders, or the whole root as span 0."""

from __future__ import annotations

import datetime
import os

import pytest

from data import spans, video_sets


def _videos(root, names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not decoded while listing: " + name.encode())


def test_numbered_spans_in_order_and_other_folders_ignored(tmp_path):
    _videos(tmp_path, ["span-10/Run/a.avi", "span-2/Run/b.avi", "span-2/Walk/c.avi"])
    _videos(tmp_path, ["notes/x.avi", "span-x/Run/d.avi"])
    found = spans.list_spans(str(tmp_path))
    assert found == [spans.Span(2, f"{tmp_path}/span-2"), spans.Span(10, f"{tmp_path}/span-10")]


def test_a_root_without_span_folders_is_span_zero(synthetic_root, tmp_path):
    assert spans.list_spans(str(synthetic_root)) == [spans.Span(0, str(synthetic_root))]
    _videos(tmp_path, ["Run/a.avi", "Walk/b.avi"])
    assert spans.list_spans(f"{tmp_path}/") == [spans.Span(0, str(tmp_path))]


def test_dated_spans_count_days_as_tfx_does(tmp_path):
    _videos(tmp_path, ["2026/11/30/Run/a.avi", "2026/12/01/Run/b.avi", "2026/13/01/Run/c.avi"])
    with pytest.raises(spans.SpanLayoutError, match="not a date"):
        spans.list_spans(str(tmp_path), "{YYYY}/{MM}/{DD}")
    (tmp_path / "2026/13/01/Run/c.avi").unlink()
    os.removedirs(tmp_path / "2026/13/01/Run")
    found = spans.list_spans(str(tmp_path), "{YYYY}/{MM}/{DD}")
    first = (datetime.date(2026, 11, 30) - datetime.date(1970, 1, 1)).days
    assert [s.number for s in found] == [first, first + 1]
    assert found[0].path == f"{tmp_path}/2026/11/30"


@pytest.mark.parametrize(
    "pattern",
    ["{SPAN}-{YYYY}-{MM}-{DD}", "{YYYY}-{MM}", "no-placeholder", "/abs/{SPAN}", "../{SPAN}"],
)
def test_unusable_patterns_are_refused(pattern):
    with pytest.raises(spans.SpanLayoutError, match="span pattern"):
        spans.pattern_regex(pattern)


def test_two_folders_of_one_span_are_refused(tmp_path):
    _videos(tmp_path, ["span-1/Run/a.avi", "span-01/Run/b.avi"])
    with pytest.raises(spans.SpanLayoutError, match="two folders are span 1"):
        spans.list_spans(str(tmp_path))


def test_fingerprint_follows_the_span_files(tmp_path):
    _videos(tmp_path, ["span-0/Run/a.avi", "span-1/Run/b.avi"])
    before = spans.fingerprint(f"{tmp_path}/span-0")
    assert spans.fingerprint(f"{tmp_path}/span-0") == before
    (tmp_path / "span-1/Run/b.avi").write_bytes(b"another span changes nothing here")
    assert spans.fingerprint(f"{tmp_path}/span-0") == before
    _videos(tmp_path, ["span-0/Walk/new.avi"])
    assert spans.fingerprint(f"{tmp_path}/span-0") != before


def test_folder_spans_share_one_class_numbering(tmp_path):
    """A span without a class still labels the others as every span does."""
    _videos(tmp_path, ["span-0/Run/v_Run_g01_c01.avi", "span-0/Walk/v_Walk_g01_c01.avi"])
    _videos(tmp_path, ["span-1/Walk/v_Walk_g02_c01.avi", "span-1/Jump/v_Jump_g02_c01.avi"])
    found = spans.list_spans(str(tmp_path))
    listing = spans.list_span_videos(found[1:], all_spans=found)
    assert listing.class_names == ("Jump", "Run", "Walk")
    assert {r.label_name: r.label for r in listing.records} == {"Jump": 0, "Walk": 2}
    both = spans.list_span_videos(found)
    assert len(both.records) == 4 and both.class_names == ("Jump", "Run", "Walk")


def test_ucf101_spans_keep_their_lists_and_must_agree(synthetic_root, tmp_path):
    import shutil

    for n in (0, 1):
        shutil.copytree(synthetic_root, tmp_path / f"span-{n}")
    found = spans.list_spans(str(tmp_path))
    listing = spans.list_span_videos(found[1:], all_spans=found)
    assert listing.layout == "ucf101"
    assert listing == video_sets.list_videos(f"{tmp_path}/span-1")
    with open(tmp_path / "span-0" / "ucfTrainTestlist" / "classInd.txt", "a") as f:
        f.write("7 Wave\r\n")
    with pytest.raises(spans.SpanLayoutError, match="disagree on the classes"):
        spans.list_span_videos(found[1:], all_spans=found)
