"""Fixtures of tests/data: videos with real-world timestamps (tests/data/timed_videos.py)."""

import pytest

from tests.data import timed_videos


@pytest.fixture(scope="session")
def timed_folder(tmp_path_factory):
    """A folder holding every video of timed_videos.TIMED, written once."""
    folder = tmp_path_factory.mktemp("timed")
    for name in timed_videos.TIMED:
        timed_videos.write(folder / name, name)
    return folder
