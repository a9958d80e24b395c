"""The Beam ingest on real videos: examples match a direct decode, bad inputs are reported."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from data import ingest, synthetic, video, video_sets
from tests.data import timed_videos

IN_PROCESS = ["--direct_running_mode=in_memory"]  # tests: no worker start-up per run


def read_examples(pattern):
    files = tf.io.gfile.glob(str(pattern))
    assert files, pattern
    examples = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        examples.append({k: v for k, v in example.features.feature.items()})
    return examples


def value(feature):
    kind = feature.WhichOneof("kind")
    values = list(getattr(feature, kind).value)
    return values[0] if len(values) == 1 and kind != "bytes_list" else values


@pytest.fixture(scope="module")
def cli_output(synthetic_root, tmp_path_factory):
    """The CLI, with Beam's multi-process DirectRunner and 2 workers, on the embedded set."""
    out = tmp_path_factory.mktemp("ingest")
    argv = ["--data-root", str(synthetic_root), "--split", "2", "--output", str(out)]
    argv += ["--frame-stride", "1", "--max-frames", "64"]  # every frame: compared below
    argv += ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]
    assert ingest.main(argv) == 0
    return out


def test_cli_writes_splits_and_an_empty_error_report(cli_output, synthetic_root):
    assert (cli_output / "errors.jsonl").read_text() == ""
    listing = video_sets.list_videos(str(synthetic_root), split=2)
    for split in ("train", "eval"):
        examples = read_examples(cli_output / f"Split-{split}" / "*.gz")
        got = {value(e["video_id"])[0].decode(): e for e in examples}
        expected = {r.video_id: r for r in listing.split(split)}
        assert sorted(got) == sorted(expected)  # each listed video exactly once, right split
        for video_id, e in got.items():
            record = expected[video_id]
            assert (
                value(e["label"]) == record.label == synthetic.SPEC.classes.index(record.label_name)
            )
            assert value(e["label_name"]) == [record.label_name.encode()]
            assert value(e["group"]) == [record.group.encode()]
            assert value(e["num_frames"]) == len(e["frames"].bytes_list.value)


def test_frames_match_a_direct_pyav_decode(cli_output, synthetic_root):
    examples = read_examples(cli_output / "Split-eval" / "*.gz")
    for e in examples[:6]:
        name = value(e["label_name"])[0].decode()
        path = synthetic_root / "UCF-101" / name / f"{value(e['video_id'])[0].decode()}.avi"
        reference = video.decode_video(path).frames  # PyAV, every frame (checked in test_video)
        frames = [video.decode_jpeg(b) for b in e["frames"].bytes_list.value]
        assert len(frames) == len(reference) == synthetic.SPEC.num_frames
        assert value(e["num_frames"]) == len(reference)
        assert (value(e["height"]), value(e["width"])) == (64, 64)
        assert value(e["fps"]) == pytest.approx(synthetic.SPEC.fps)
        assert value(e["time_step"]) == pytest.approx(1 / synthetic.SPEC.fps)
        error = np.abs(np.stack(frames).astype(int) - np.stack(reference)).mean()
        assert error < 3, (path, error)  # JPEG q90


def test_options_sample_and_resize(synthetic_root, tmp_path):
    options = ingest.IngestOptions(frame_stride=3, max_frames=8, short_side=32, jpeg_quality=80)
    summary = ingest.run(str(synthetic_root), str(tmp_path), 1, options, IN_PROCESS)
    examples = read_examples(tmp_path / "Split-train" / "*.gz")
    assert len(examples) == summary.good["train"]
    for e in examples:
        # 40 frames at stride 3: 14 grid points, more than 8, so every 6th frame: 7 of them.
        assert value(e["num_frames"]) == 7 == len(e["frames"].bytes_list.value)
        assert value(e["time_step"]) == pytest.approx(6 / synthetic.SPEC.fps)
        assert video.decode_jpeg(e["frames"].bytes_list.value[0]).shape == (32, 32, 3)
    assert ingest.IngestOptions.from_json(options.to_json()) == options


def test_bad_inputs_are_reported_counted_and_the_good_all_arrive(broken_root, tmp_path):
    root, bad = broken_root
    options = ingest.IngestOptions(max_bad_fraction=0.5)
    summary = ingest.run(str(root), str(tmp_path), 1, options, IN_PROCESS)
    listing = video_sets.list_videos(str(root), 1)
    lines = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    reported = {video_sets.stem(line["path"]): line for line in lines}
    assert len(lines) == len(reported) == len(bad)
    for video_id, reason in bad.items():
        assert reported[video_id]["reason"].startswith(reason), reported[video_id]
        assert reported[video_id]["path"].endswith(f"{video_id}.avi")
    arrived = {
        value(e["video_id"])[0].decode()
        for split in ("train", "eval")
        for e in read_examples(tmp_path / f"Split-{split}" / "*.gz")
    }
    assert arrived == {r.video_id for r in listing.records} - set(bad)
    assert len(arrived) + len(lines) == len(listing.records)
    assert summary.metrics["videos_bad"] == len(bad)
    assert summary.metrics["videos_good"] == len(arrived) == sum(summary.good.values())
    for kind in ("listed", "empty", "truncated:", "undecodable:", "class"):
        assert summary.metrics[f"bad_{kind}"] == 1, summary.metrics


def test_too_many_bad_videos_fail_the_run_with_the_report(broken_root, tmp_path):
    root, bad = broken_root
    listed = len(video_sets.list_videos(str(root), 1).records)
    options = ingest.IngestOptions(max_bad_fraction=(len(bad) - 0.5) / listed)  # just under
    with pytest.raises(
        ingest.TooManyBadVideosError,
        match=r"5 of \d+ videos .*v_ShiftLeft_g03_c01.avi: listed file is missing.*errors\.jsonl",
    ):
        ingest.run(str(root), str(tmp_path), 1, options, IN_PROCESS)
    assert len((tmp_path / "errors.jsonl").read_text().splitlines()) == len(bad)


def test_folder_per_class_mp4_set(tmp_path):
    """No list files, H.264 in MP4, default options (32 frames at stride 2): labels from sorted
    folders, groups never straddle splits."""
    root = tmp_path / "videos"
    for label, name in enumerate(["Wave", "Clap"]):
        (root / name).mkdir(parents=True)
        for g in range(4):
            for c in range(2):
                frames = synthetic.render_clip("ShiftLeft" if label else "PulseFast", [g], [g, c])
                synthetic.write_video(
                    root / name / f"v_{name}_g{g:02d}_c{c:02d}.mp4", frames[:12], 25, "libx264"
                )
    summary = ingest.run(str(root), str(tmp_path / "out"), options=None, beam_args=IN_PROCESS)
    assert summary.bad == [] and sum(summary.good.values()) == 16
    groups = {}
    for split in ("train", "eval"):
        for e in read_examples(tmp_path / "out" / f"Split-{split}" / "*.gz"):
            groups.setdefault(value(e["group"])[0], set()).add(split)
            assert value(e["label"]) == ["Clap", "Wave"].index(value(e["label_name"])[0].decode())
            assert value(e["num_frames"]) == 6  # 12 frames at stride 2
    assert all(len(splits) == 1 for splits in groups.values())


def test_timed_videos_arrive_and_their_cut_copies_are_reported(timed_folder, tmp_path):
    """Late start, gap, variable rate: ingested over their timeline (default options, stride
    2); the same files cut at half their bytes: reported truncated. Good + reported = listed."""
    root = tmp_path / "videos"
    (root / "Good").mkdir(parents=True)
    (root / "Cut").mkdir()
    for name in timed_videos.TIMED:
        shutil.copy(timed_folder / name, root / "Good" / name)
        data = (timed_folder / name).read_bytes()
        (root / "Cut" / name).write_bytes(data[: len(data) // 2])
    options = ingest.IngestOptions(max_bad_fraction=0.5)
    summary = ingest.run(str(root), str(tmp_path / "out"), options=options, beam_args=IN_PROCESS)
    examples = [
        e for s in video_sets.SPLITS for e in read_examples(tmp_path / "out" / f"Split-{s}/*")
    ]
    assert sorted(value(e["label_name"])[0] for e in examples) == [b"Good"] * 3
    for e in examples:
        name = next(n for n in timed_videos.TIMED if n.startswith(value(e["video_id"])[0].decode()))
        sources, step = timed_videos.expected_sources(root / "Good" / name, name, stride=2)
        frames = [video.decode_jpeg(b) for b in e["frames"].bytes_list.value]
        assert [timed_videos.source_index(f) for f in frames] == sources, name
        assert value(e["num_frames"]) == len(sources)
        assert value(e["time_step"]) == pytest.approx(float(step))
    assert sorted(video_sets.stem(b["path"]) for b in summary.bad) == sorted(
        video_sets.stem(n) for n in timed_videos.TIMED
    )
    assert all(b["path"].split("/")[-2] == "Cut" for b in summary.bad)
    assert all(b["reason"].startswith("truncated: data ends at") for b in summary.bad)
    assert len(examples) + len(summary.bad) == summary.listed == 6


def test_beam_workers_need_no_tensorflow():
    """Workers unpickle data.ingest and data.video_sets records: importing them must stay light."""
    import subprocess
    import sys

    code = "import sys, data.ingest; assert 'tensorflow' not in sys.modules, 'imports TF'"
    subprocess.run([sys.executable, "-c", code], check=True)
