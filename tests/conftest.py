"""Test-wide settings: the one Keras this project uses, and quiet TensorFlow logs.

Set before anything imports TensorFlow, exactly as the Makefile and the runners do.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tf.keras == tf_keras (Keras 2), as TFT and TFMA need.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import shutil  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """The embedded data set (real .avi files, UCF101 layout), generated once per session."""
    from data import synthetic

    return synthetic.generate(tmp_path_factory.mktemp("synthetic") / "data", seed=0)


@pytest.fixture(scope="session")
def broken_root(synthetic_root, tmp_path_factory):
    """A copy of the embedded set with one video of each bad kind.

    Returns (root, {video_id: expected start of the reason}).
    """
    root = tmp_path_factory.mktemp("broken") / "data"
    shutil.copytree(synthetic_root, root)
    videos, lists = root / "UCF-101", root / "ucfTrainTestlist"
    bad = {}

    def victim(class_name, group, clip):
        video_id = f"v_{class_name}_g{group:02d}_c{clip:02d}"
        return video_id, videos / class_name / f"{video_id}.avi"

    video_id, path = victim("ShiftLeft", 3, 1)
    path.unlink()
    bad[video_id] = "listed file is missing"
    video_id, path = victim("ShiftRight", 4, 2)
    path.write_bytes(b"")
    bad[video_id] = "empty file"
    video_id, path = victim("ShiftUp", 5, 3)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 3 // 4])
    bad[video_id] = "truncated"
    video_id, path = victim("PulseSlow", 1, 2)
    path.write_bytes(bytes(range(256)) * 40)
    bad[video_id] = "undecodable"
    # A class that classInd does not know, with a real video on disk.
    (videos / "Juggle").mkdir()
    shutil.copy(
        videos / "PulseFast" / "v_PulseFast_g03_c01.avi", videos / "Juggle" / "v_Juggle_g03_c01.avi"
    )
    with open(lists / "trainlist01.txt", "a") as f:
        f.write("Juggle/v_Juggle_g03_c01.avi 7\r\n")
    bad["v_Juggle_g03_c01"] = "class 'Juggle' is not in classInd.txt"
    return root, bad
