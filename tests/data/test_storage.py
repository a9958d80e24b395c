"""s3:// data roots and serving directories, against a real S3-protocol server on loopback."""

from __future__ import annotations

import numpy as np
import pytest

from data import storage, video, video_sets


@pytest.fixture
def bucket(s3_env):
    s3_env.create_bucket(Bucket="store-test")
    yield "s3://store-test"
    for obj in s3_env.list_objects_v2(Bucket="store-test").get("Contents", []):
        s3_env.delete_object(Bucket="store-test", Key=obj["Key"])
    s3_env.delete_bucket(Bucket="store-test")


def test_files_and_folders(bucket):
    with storage.open(f"{bucket}/a/b/c.txt", "w") as f:
        f.write("hello\n")
    with storage.open(f"{bucket}/a/d.bin", "wb") as f:
        f.write(b"\x00\x01")
    assert storage.isdir(f"{bucket}/a") and storage.isdir(f"{bucket}/a/b/")
    assert not storage.isdir(f"{bucket}/a/d.bin") and not storage.isdir(f"{bucket}/x")
    assert storage.exists(f"{bucket}/a/d.bin") and storage.exists(f"{bucket}/a")
    assert not storage.exists(f"{bucket}/a/nothing")
    assert storage.listdir(f"{bucket}/a") == ["b", "d.bin"]
    assert storage.size(f"{bucket}/a/d.bin") == 2
    with storage.open(f"{bucket}/a/b/c.txt", "r") as f:
        assert f.read() == "hello\n"
    assert list(storage.walk(f"{bucket}/a")) == [
        (f"{bucket}/a", ["b"], ["d.bin"]),
        (f"{bucket}/a/b", [], ["c.txt"]),
    ]
    assert list(storage.walk(f"{bucket}/none")) == []
    files = storage.files(f"{bucket}/a")
    assert sorted(files) == ["b/c.txt", "d.bin"] and files["d.bin"][0] == 2
    assert storage.files(f"{bucket}/a/b/") == {"c.txt": files["b/c.txt"]}


def test_videos_listed_and_decoded_from_s3(bucket, synthetic_root, s3_env):
    """A folder-per-class set on S3 lists and decodes as the same files do locally."""
    local = synthetic_root / "UCF-101"
    names = ["v_ShiftLeft_g01_c01.avi", "v_ShiftLeft_g02_c01.avi"]
    for class_name in ("ShiftLeft", "ShiftRight"):
        for name in names:
            name = name.replace("ShiftLeft", class_name)
            s3_env.upload_file(
                str(local / class_name / name), "store-test", f"v/{class_name}/{name}"
            )
    listing = video_sets.list_videos(f"{bucket}/v")
    assert listing.layout == "folders" and listing.class_names == ("ShiftLeft", "ShiftRight")
    assert len(listing.records) == 4 and not any(r.error for r in listing.records)
    remote = video.decode_video(f"{bucket}/v/ShiftRight/v_ShiftRight_g02_c01.avi")
    here = video.decode_video(local / "ShiftRight" / "v_ShiftRight_g02_c01.avi")
    assert len(remote.frames) == len(here.frames) == 40
    np.testing.assert_array_equal(remote.frames[7], here.frames[7])
    with pytest.raises(video.VideoError, match="file not found"):
        video.decode_video(f"{bucket}/v/ShiftRight/missing.avi")


def test_tfx_copies_models_to_and_from_s3(bucket, tmp_path):
    """TFX's Pusher and LatestPushedModel use TFX's fileio: s3:// through components.s3_fileio."""
    from tfx.dsl.io import fileio
    from tfx.utils import io_utils

    from components import served_model

    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "variables" / "variables.index").write_bytes(b"index")
    (model / "saved_model.pb").write_bytes(b"pb")
    serving = f"{bucket}/serving/video_swin"
    assert served_model.latest_version(serving) is None
    io_utils.copy_dir(str(model), f"{serving}/1700000000")
    io_utils.copy_dir(str(model), f"{serving}/1800000000", deny_regex_patterns=[r"saved_model\.pb"])
    assert fileio.listdir(serving) == ["1700000000", "1800000000"]
    # The newest complete version: 1800000000 has no saved_model.pb yet (a push in progress).
    assert served_model.latest_version(serving) == f"{serving}/1700000000"
    io_utils.copy_dir(f"{serving}/1700000000", str(tmp_path / "back"))
    assert (tmp_path / "back" / "variables" / "variables.index").read_bytes() == b"index"
    assert (tmp_path / "back" / "saved_model.pb").read_bytes() == b"pb"
