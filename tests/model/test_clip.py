"""The Transform's temporal cover and the Trainer's clip decoding, on real JPEG frames."""

import numpy as np
import pytest
import tensorflow as tf

from data import features as F
from data import video
from model import clip as clip_lib
from model import preprocessing
from model.inputs import DataError, data_error, make_dataset
from model.options import TrainOptions


def test_temporal_cover_spans_long_videos_and_loops_short_ones():
    cover = preprocessing.temporal_cover(tf.constant([40, 5, 16], tf.int64), 16).numpy()
    long, short, exact = cover
    assert long[0] == 1 and long[-1] == 38 and np.all(np.diff(long) >= 2)  # whole video, in order
    assert short.tolist() == [i % 5 for i in range(16)]  # UCF101's shortest videos: looped
    assert exact.tolist() == list(range(16))


def _jpegs(frames: np.ndarray) -> list[bytes]:
    return [video.encode_jpeg(f) for f in frames]


def test_evaluation_clip_is_the_centre_clip_and_square():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (12, 48, 80, 3), dtype=np.uint8)
    jpegs = _jpegs(frames)
    out = clip_lib.jpeg_clip(tf.constant(jpegs), clip_frames=4, size=24, training=False).numpy()
    assert out.shape == (4, 24, 24, 3) and out.dtype == np.uint8
    # Centre clip (frames 4..7), centre square (columns 16..63), resized: the same as decoding
    # each whole frame and cropping it.
    decoded = np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs[4:8]])
    expected = clip_lib.resize_uint8(tf.constant(decoded[:, :, 16:64]), 24).numpy()
    np.testing.assert_array_equal(out, expected)
    # serving_frames' path on already sampled frames gives the same pixels.
    np.testing.assert_array_equal(clip_lib.frames_clip(tf.constant(decoded[None]), 24)[0], out)


def test_evaluation_views_follow_mmaction_test_sampling():
    # SampleFrames(test_mode): first to last possible offset; one clip: the centre clip.
    assert clip_lib.view_offsets(64, 32, 4) == [0, 10, 21, 32]
    assert clip_lib.view_offsets(16, 8, 3) == [0, 4, 8]
    assert clip_lib.view_offsets(16, 8, 1) == [4]
    assert clip_lib.view_offsets(10, 8, 5) == [0, 1, 2]  # only 3 distinct clips exist
    assert clip_lib.crop_positions(3) == [0, 1, 2] and clip_lib.crop_positions(1) == [1]
    with pytest.raises(ValueError, match="crops must be 1"):
        clip_lib.crop_positions(10)
    # ThreeCrop: squares of the short side at the start, centre and end of the long side.
    windows = [clip_lib.square_window(240, 320, p).numpy().tolist() for p in (0, 1, 2)]
    assert windows == [[0, 0, 240, 240], [0, 40, 240, 240], [0, 80, 240, 240]]
    assert clip_lib.square_window(320, 240, 2).numpy().tolist() == [80, 0, 240, 240]


def test_view_clips_crop_each_view_and_the_centre_view_is_the_evaluation_clip():
    rng = np.random.default_rng(5)
    jpegs = tf.constant(_jpegs(rng.integers(0, 256, (11, 48, 80, 3), dtype=np.uint8)))
    views = [(4, 1), (0, 0), (8, 2)]  # 3-frame clips: frames 3 and 7 are in none
    clips = clip_lib.view_clips(jpegs, 3, 24, views).numpy()
    assert clips.shape == (3, 3, 24, 24, 3) and clips.dtype == np.uint8
    centre = clip_lib.jpeg_clip(jpegs, clip_frames=3, size=24, training=False).numpy()
    np.testing.assert_array_equal(clips[0], centre)
    decoded = np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs.numpy()])
    for clip, (start, x) in zip(clips[1:], ((0, 0), (8, 32)), strict=True):
        window = decoded[start : start + 3, :, x : x + 48]
        np.testing.assert_array_equal(clip, clip_lib.resize_uint8(tf.constant(window), 24))


def test_training_clips_are_random_windows_of_the_right_shape():
    frames = np.random.default_rng(1).integers(0, 256, (16, 40, 40, 3), dtype=np.uint8)
    jpegs = tf.constant(_jpegs(frames))
    clips = [
        clip_lib.jpeg_clip(jpegs, 8, 16, training=True, area_range=(0.3, 1.0), flip=True).numpy()
        for _ in range(4)
    ]
    assert all(c.shape == (8, 16, 16, 3) and c.dtype == np.uint8 for c in clips)
    assert len({c.tobytes() for c in clips}) > 1


def _write(path, examples):
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for jpegs, label, video_id in examples:
            example = tf.train.Example()
            f = example.features.feature
            f[preprocessing.SAMPLED_FRAMES].bytes_list.value.extend(jpegs)
            f[F.LABEL].int64_list.value.append(label)
            f[F.VIDEO_ID].bytes_list.value.append(video_id.encode())
            writer.write(example.SerializeToString())


SPEC = {
    preprocessing.SAMPLED_FRAMES: tf.io.FixedLenFeature([4], tf.string),
    F.LABEL: tf.io.FixedLenFeature([], tf.int64),
    F.VIDEO_ID: tf.io.FixedLenFeature([], tf.string),
}


def _parse(record):
    """Examples already in the Transform's output form (the pipeline's: transform_fn)."""
    return tf.io.parse_single_example(record, SPEC)


def test_a_clip_with_a_damaged_frame_is_skipped_and_named(tmp_path, capfd):
    frames = np.random.default_rng(2).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    good = _jpegs(frames)
    damaged = [*good[:2], good[2][: len(good[2]) // 2], good[3]]  # a frame cut in half
    path = tmp_path / "clips.tfrecord.gz"
    _write(path, [(good, 0, "v_good"), (damaged, 1, "v_damaged"), (good, 1, "v_good_2")])
    options = TrainOptions(clip_frames=2, sampled_frames=4, image_size=16)
    batches = list(make_dataset(str(path), _parse, options, 2, 8, training=False))
    assert sum(len(x) for x, _ in batches) == 2
    assert "v_damaged" in capfd.readouterr().err


def test_a_label_outside_the_class_list_stops_training_at_its_batch_naming_the_video(tmp_path):
    jpegs = _jpegs(np.zeros((4, 8, 8, 3), np.uint8))
    good = [(jpegs, i % 3, f"v_{i}") for i in range(4)]
    path = tmp_path / "clips.tfrecord.gz"
    _write(path, [*good, (jpegs, preprocessing.UNKNOWN_LABEL, "v_Wave_g01_c01"), *good])
    options = TrainOptions(clip_frames=2, sampled_frames=4, image_size=8)
    batches = iter(make_dataset(str(path), _parse, options, 3, 2, training=False))
    assert [len(next(batches)[0]) for _ in range(2)] == [2, 2]  # the batches before it train
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        next(batches)
    error = data_error(raised.value, 3)
    assert isinstance(error, DataError) and str(error).startswith("v_Wave_g01_c01: ")
    assert data_error(tf.errors.InvalidArgumentError(None, None, "other"), 3) is None


def test_a_seeded_training_clip_is_the_same_whatever_runs_it():
    frames = np.random.default_rng(3).integers(0, 256, (16, 40, 40, 3), dtype=np.uint8)
    jpegs = tf.constant(_jpegs(frames))

    def draw(seed):
        seed = tf.constant(seed, tf.int64)
        return clip_lib.jpeg_clip(jpegs, 8, 16, True, (0.3, 1.0), True, seed=seed).numpy()

    assert draw([0, 7]).tobytes() == draw([0, 7]).tobytes()
    assert len({draw([0, i]).tobytes() for i in range(4)}) > 1


def test_a_deterministic_training_stream_repeats_itself(tmp_path):
    """TrainOptions.deterministic: the same seed gives the same batches, in the same order."""
    rng = np.random.default_rng(4)
    examples = [
        (_jpegs(rng.integers(0, 256, (4, 24, 24, 3), dtype=np.uint8)), i % 2, f"v_{i}")
        for i in range(6)
    ]
    path = tmp_path / "clips.tfrecord.gz"
    _write(path, examples)
    options = TrainOptions(
        clip_frames=2, sampled_frames=4, image_size=16, flip=True, deterministic=True
    )

    def first_batches(seed):
        tf.keras.utils.set_random_seed(seed)
        dataset = make_dataset(str(path), _parse, options, 2, 4, training=True)
        return [x.numpy().tobytes() for x, _ in dataset.take(3)]

    assert first_batches(0) == first_batches(0)
    assert first_batches(0) != first_batches(1)
