"""PyAV decoding, sampling, resizing and JPEG encoding on real encoded files."""

import av
import numpy as np
import pytest

from data import synthetic, video


def _reference_frames(path):
    """A direct PyAV decode: every frame, RGB, nothing else."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def clip_path(synthetic_root):
    return synthetic_root / "UCF-101" / "ShiftRight" / "v_ShiftRight_g01_c01.avi"


def test_full_decode_matches_pyav(clip_path):
    reference = _reference_frames(clip_path)
    clip = video.decode_video(clip_path)
    assert len(reference) == synthetic.SPEC.num_frames == len(clip.frames) == clip.declared_frames
    np.testing.assert_array_equal(np.stack(clip.frames), np.stack(reference))
    assert (clip.height, clip.width, clip.fps) == (64, 64, synthetic.SPEC.fps)


@pytest.mark.parametrize("stride,max_frames", [(1, 10), (2, None), (3, 5), (4, 100)])
def test_stride_and_max_frames_pick_the_right_frames(clip_path, stride, max_frames):
    reference = _reference_frames(clip_path)[::stride][:max_frames]
    clip = video.decode_video(clip_path, frame_stride=stride, max_frames=max_frames)
    np.testing.assert_array_equal(np.stack(clip.frames), np.stack(reference))


def test_short_side_resize_keeps_aspect_ratio(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (6, 48, 96, 3), dtype=np.uint8)
    path = tmp_path / "wide.mp4"
    synthetic.write_video(path, frames, fps=30, codec="libx264")
    clip = video.decode_video(path, short_side=32)
    assert (clip.height, clip.width) == (32, 64)
    assert clip.frames[0].shape == (32, 64, 3)
    assert video.resized_shape(240, 320, 256) == (256, 341)
    assert video.resized_shape(240, 320, None) == (240, 320)


@pytest.mark.parametrize("name,codec", [("clip.mp4", "libx264"), ("clip.webm", "libvpx-vp9")])
def test_other_containers_and_codecs(tmp_path, name, codec):
    frames = synthetic.render_clip("PulseFast", 1, 2)
    synthetic.write_video(tmp_path / name, frames, fps=25, codec=codec)
    clip = video.decode_video(tmp_path / name)
    assert len(clip.frames) == len(frames)
    # Lossy codecs: close to what was encoded, on average.
    assert np.abs(np.stack(clip.frames).astype(int) - frames).mean() < 8


def test_jpeg_round_trip_is_within_tolerance(clip_path):
    frame = video.decode_video(clip_path, max_frames=1).frames[0]
    data = video.encode_jpeg(frame, quality=90)
    assert data[:2] == b"\xff\xd8"
    back = video.decode_jpeg(data)
    assert back.shape == frame.shape
    assert np.abs(back.astype(int) - frame).mean() < 3
    assert len(video.encode_jpeg(frame, quality=30)) < len(data)


def test_bad_files_raise_a_clear_reason(tmp_path, clip_path):
    with pytest.raises(video.VideoError, match="file not found"):
        video.decode_video(tmp_path / "absent.avi")
    (tmp_path / "empty.avi").write_bytes(b"")
    with pytest.raises(video.VideoError, match="empty file"):
        video.decode_video(tmp_path / "empty.avi")
    (tmp_path / "noise.avi").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(video.VideoError, match="undecodable"):
        video.decode_video(tmp_path / "noise.avi")
    data = clip_path.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(video.VideoError, match=r"truncated: \d+ of 40"):
        video.decode_video(tmp_path / "cut.avi")
    # Also when only the first frames are needed: the rest is demuxed to check completeness.
    with pytest.raises(video.VideoError, match="truncated"):
        video.decode_video(tmp_path / "cut.avi", max_frames=4)
