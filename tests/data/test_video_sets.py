"""Listing UCF101 by its list files, and folder-per-class sets by group hash."""

import shutil
from pathlib import Path

import pytest

from data import synthetic, video_sets

SPEC = synthetic.SPEC


def _list_file(root, name):
    return (root / "ucfTrainTestlist" / name).read_bytes().decode().split("\r\n")  # CRLF


@pytest.mark.parametrize("split", [1, 2, 3])
def test_ucf101_splits_follow_the_list_files(synthetic_root, split):
    listing = video_sets.list_videos(str(synthetic_root), split)
    assert listing.layout == "ucf101" and listing.class_names == SPEC.classes
    train = [line.split() for line in _list_file(synthetic_root, f"trainlist0{split}.txt") if line]
    test = [line for line in _list_file(synthetic_root, f"testlist0{split}.txt") if line]
    got_train = {f"{r.label_name}/{r.video_id}.avi": r.label + 1 for r in listing.split("train")}
    assert got_train == {path: int(label) for path, label in train}
    assert sorted(f"{r.label_name}/{r.video_id}.avi" for r in listing.split("eval")) == sorted(test)
    assert not any(r.error for r in listing.records)
    eval_groups = {int(r.group[-2:]) for r in listing.split("eval")}
    assert eval_groups == set(SPEC.test_groups(split))
    assert {r.group for r in listing.split("train")}.isdisjoint(
        r.group for r in listing.split("eval")
    )


def test_root_may_be_the_videos_folder_with_lists_beside_it(synthetic_root):
    from_top = video_sets.list_videos(str(synthetic_root))
    from_videos = video_sets.list_videos(str(synthetic_root / "UCF-101"))
    assert from_videos == from_top


def test_listing_problems_stay_with_their_record(broken_root):
    root, bad = broken_root
    records = {r.video_id: r for r in video_sets.list_videos(str(root), 1).records}
    assert records["v_ShiftLeft_g03_c01"].error == "listed file is missing"
    assert records["v_Juggle_g03_c01"].error == "class 'Juggle' is not in classInd.txt"
    assert records["v_Juggle_g03_c01"].label == -1
    assert sum(bool(r.error) for r in records.values()) == 2  # the rest only show on decoding


def test_list_case_differences_are_tolerated(synthetic_root, tmp_path):
    # UCF101 itself lists HandstandPushups/v_HandStandPushups_* in one case and stores another.
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    folder = root / "UCF-101" / "PulseFast"
    for f in folder.iterdir():
        f.rename(folder / f.name.replace("PulseFast", "Pulsefast"))
    listing = video_sets.list_videos(str(root))
    assert not any(r.error for r in listing.records)
    assert all(
        r.path.endswith(f"v_Pulsefast_{r.video_id[12:]}.avi")
        for r in listing.records
        if r.label_name == "PulseFast"
    )


def test_group_of():
    assert video_sets.group_of("v_ApplyEyeMakeup_g08_c01") == "v_ApplyEyeMakeup_g08"
    assert video_sets.group_of("my_cat_g2_c10") == "my_cat_g2"
    assert video_sets.group_of("April_09_brush_hair_u_nm_np1_ba_goo_0") == (
        "April_09_brush_hair_u_nm_np1_ba_goo_0"
    )


@pytest.fixture(scope="module")
def folder_root(synthetic_root, tmp_path_factory):
    """Folder-per-class, no lists: the embedded videos plus HMDB51-style names."""
    root = tmp_path_factory.mktemp("folders")
    shutil.copytree(synthetic_root / "UCF-101", root, dirs_exist_ok=True)
    source = synthetic_root / "UCF-101" / "ShiftUp" / "v_ShiftUp_g01_c01.avi"
    for i in range(10):
        shutil.copy(source, root / "ShiftUp" / f"Some_movie_shift_up_u_cm_np1_fr_med_{i}.avi")
    (root / "ShiftUp" / "notes.txt").write_text("not a video")
    return root


def test_folder_sets_split_by_group_hash(folder_root):
    listing = video_sets.list_videos(str(folder_root), eval_fraction=0.3)
    assert listing.layout == "folders" and listing.class_names == tuple(sorted(SPEC.classes))
    assert len(listing.records) == SPEC.num_videos + 10  # notes.txt is not a video
    train = {r.group for r in listing.split("train")}
    held = {r.group for r in listing.split("eval")}
    assert train and held and train.isdisjoint(held)
    assert 0.1 < len(held) / len(train | held) < 0.5
    for r in listing.records:
        assert r.label == listing.class_names.index(r.label_name)
        assert r.split == video_sets.hash_split(f"{r.label_name}/{r.group}", 0.3)
    # Stable: the same choice on every call (sha256, not Python's salted hash()).
    assert video_sets.list_videos(str(folder_root), eval_fraction=0.3) == listing


def test_not_a_data_root(tmp_path):
    with pytest.raises(video_sets.DataLayoutError, match="not a directory"):
        video_sets.list_videos(str(tmp_path / "nowhere"))
    with pytest.raises(video_sets.DataLayoutError, match="no class folders"):
        video_sets.list_videos(str(tmp_path))


UCF101_SCHEMA_DIR = Path(__file__).resolve().parents[2] / "pipeline" / "schema" / "ucf101"


def test_official_class_list_and_curated_schema_agree():
    """101 classes in classInd order (case-insensitive alphabetical, as UCF101 ships it), and
    the schema's label range, label_name domain and frame bounds match them and the ingest."""
    from tfx.utils import io_utils

    from data import features as F
    from data import ingest

    classes = video_sets.read_class_index(str(UCF101_SCHEMA_DIR / "classInd.txt"))
    assert len(classes) == len(set(classes)) == 101
    assert classes[0] == "ApplyEyeMakeup" and classes[36] == "HandstandPushups"
    assert classes[-1] == "YoYo" and list(classes) == sorted(classes, key=str.lower)
    schema = io_utils.SchemaReader().read(str(UCF101_SCHEMA_DIR / "schema.pbtxt"))
    features = {f.name: f for f in schema.feature}
    names = {v for k, v in vars(F).items() if k.isupper() and isinstance(v, str)}
    assert set(features) == names  # every stored feature, nothing else
    assert (features[F.LABEL].int_domain.min, features[F.LABEL].int_domain.max) == (0, 100)
    (domain,) = [d for d in schema.string_domain if d.name == F.LABEL_NAME]
    assert tuple(domain.value) == classes
    max_frames = ingest.IngestOptions().max_frames  # the real-data defaults
    assert features[F.NUM_FRAMES].int_domain.max == max_frames
    assert features[F.FRAMES].value_count.max == max_frames
    assert features[F.FRAMES].value_count.min == features[F.NUM_FRAMES].int_domain.min
    assert all(f.presence.min_fraction == 1.0 for f in schema.feature)


def test_class_index_of_tells_ucf101_roots_from_folder_sets(synthetic_root, tmp_path):
    assert video_sets.class_index_of(str(synthetic_root)) == SPEC.classes
    (tmp_path / "Wave").mkdir()
    assert video_sets.class_index_of(str(tmp_path)) is None
