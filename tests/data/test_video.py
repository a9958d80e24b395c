"""PyAV decoding, timeline sampling, truncation, resizing and JPEG encoding on real files."""

from fractions import Fraction

import av
import numpy as np
import pytest

from data import synthetic, video
from tests.data.timed_videos import TIMED, expected_sources, source_index


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


@pytest.mark.parametrize(
    "stride,max_frames,multiple", [(1, 40, 1), (2, None, 1), (3, 5, 4), (1, 39, 2)]
)
def test_stride_and_max_frames_cover_the_whole_video(clip_path, stride, max_frames, multiple):
    """40 frames at 25 fps: a stride-s grid, its step doubled until max_frames hold it all."""
    reference = _reference_frames(clip_path)[:: stride * multiple]
    clip = video.decode_video(clip_path, frame_stride=stride, max_frames=max_frames)
    np.testing.assert_array_equal(np.stack(clip.frames), np.stack(reference))
    assert clip.time_step == pytest.approx(stride * multiple / 25)
    assert clip.duration == pytest.approx(40 / 25)
    assert (len(clip.frames) - 1) * clip.time_step > clip.duration - clip.time_step - 1e-9


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
    with pytest.raises(video.VideoError, match=r"truncated: data ends at \d\.\d\d s, .* 1\.60 s"):
        video.decode_video(tmp_path / "cut.avi")
    with pytest.raises(video.VideoError, match="truncated"):
        video.decode_video(tmp_path / "cut.avi", frame_stride=2, max_frames=4)
    # Cut just before the index, inside the last frames' data: the demuxer sees a short chunk.
    (tmp_path / "cut_late.avi").write_bytes(data[: len(data) * 9 // 10])
    with pytest.raises(video.VideoError, match="truncated: frame data cut at"):
        video.decode_video(tmp_path / "cut_late.avi")


@pytest.mark.parametrize("name", sorted(TIMED))
@pytest.mark.parametrize("stride", [1, 3])
def test_timestamps_are_followed_not_packet_counts(timed_folder, name, stride):
    """Late start, gap, variable rate: the frame showing at each grid time, to the last frame."""
    clip = video.decode_video(timed_folder / name, frame_stride=stride)
    sources, step = expected_sources(timed_folder / name, name, stride)
    assert [source_index(f) for f in clip.frames] == sources
    pts, time_base, _ = TIMED[name]
    assert clip.start_time == pytest.approx(float(pts[0] * time_base))
    assert clip.time_step == pytest.approx(float(step))


def test_long_video_is_a_uniform_cover_within_max_frames(timed_folder):
    """60 grid points at stride 1 and max_frames 16: the step doubles twice, 15 frames."""
    clip = video.decode_video(timed_folder / "gap.avi", max_frames=16)
    assert len(clip.frames) == 15 and clip.time_step == pytest.approx(0.16)
    sources, _ = expected_sources(timed_folder / "gap.avi", "gap.avi", 1)  # 20-39 hold 19
    assert [source_index(f) for f in clip.frames] == sources[::4]


@pytest.mark.parametrize("name", sorted(TIMED))
def test_the_same_videos_cut_in_half_are_truncated(timed_folder, tmp_path, name):
    data = (timed_folder / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(video.VideoError, match="^truncated: data ends at"):
        video.decode_video(tmp_path / name)


def test_a_wild_timestamp_is_an_error_not_a_day_of_frames(tmp_path):
    """A frame stamped 25 h after the first: rejected at once, not sampled for a day."""
    path = tmp_path / "wild.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.height = stream.width = 16
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate([0, 40, 25 * 3600 * 1000]):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 40 * i, np.uint8), "rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(video.VideoError, match=r"undecodable: a timestamp 90000 s after"):
        video.decode_video(path)


def test_best_effort_timestamp_falls_back_to_dts_when_pts_are_faulty():
    """As FFmpeg guesses display times: pts while they behave better than dts, else dts."""
    guess = video.BestEffortTimestamp()
    assert [guess(p, d) for p, d in [(0, 0), (1, 0), (2, 0), (3, None)]] == [0, 1, 2, 3]
    guess = video.BestEffortTimestamp()
    pairs = [(0, 0), (0, 1), (0, 2), (3, 3), (3, 4)]  # pts repeat (packed B-frames), dts advance
    assert [guess(p, d) for p, d in pairs] == [0, 1, 2, 3, 4]
    assert video.BestEffortTimestamp()(None, None) is None
