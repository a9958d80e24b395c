"""The embedded data set: UCF101's layout, deterministic, and only separable over time."""

import re

import numpy as np

from data import synthetic, video_sets

SPEC = synthetic.SPEC


def test_layout_is_ucf101s(synthetic_root):
    lists = synthetic_root / "ucfTrainTestlist"
    assert sorted(p.name for p in lists.iterdir()) == sorted(
        ["classInd.txt"] + [f"{k}list0{s}.txt" for k in ("train", "test") for s in (1, 2, 3)]
    )
    assert video_sets.read_class_index(str(lists / "classInd.txt")) == SPEC.classes
    files = sorted((synthetic_root / "UCF-101").glob("*/*"))
    assert len(files) == SPEC.num_videos
    for f in files:
        assert re.fullmatch(rf"v_{f.parent.name}_g\d\d_c\d\d\.avi", f.name), f
    first = (lists / "trainlist01.txt").read_text().splitlines()[0]
    assert re.fullmatch(r"\w+/v_\w+_g\d\d_c\d\d\.avi \d+", first)


def test_same_seed_same_bytes_other_seed_other_videos(synthetic_root, tmp_path):
    again = synthetic.generate(tmp_path / "again", seed=0)
    other = synthetic.generate(tmp_path / "other", seed=1)
    name = "UCF-101/PulseSlow/v_PulseSlow_g02_c03.avi"
    assert (again / name).read_bytes() == (synthetic_root / name).read_bytes()
    assert (other / name).read_bytes() != (synthetic_root / name).read_bytes()
    assert synthetic.ensure(again) == again  # present: not regenerated


def _square_masks(frames, scene_seed):
    _, color = synthetic.render_scene(scene_seed)
    return (frames == color).all(-1)


def test_classes_differ_only_over_time():
    areas, motions = {}, {}
    for name in SPEC.classes:
        masks = [
            _square_masks(synthetic.render_clip(name, [g], [g, c]), [g])
            for g in range(4)
            for c in range(3)
        ]
        areas[name] = np.concatenate([m.sum((1, 2)) for m in masks])
        # Typical displacement of the square between frames (median: ignores wrap-around jumps).
        motions[name] = np.median(
            [
                np.subtract(*[np.argwhere(m[t + 1]).mean(0), np.argwhere(m[t]).mean(0)])
                for m in masks
                for t in range(3)
            ],
            axis=0,
        )
    # One frame: the square's size range is the same for every class.
    for name in SPEC.classes:
        assert areas[name].min() >= 10 * 10 and areas[name].max() <= 22 * 22, name
        assert areas[name].max() - areas[name].min() > 150, name
    # Over time: direction of motion, or a pulsing size at different rhythms.
    assert motions["ShiftRight"][1] > 1 and motions["ShiftLeft"][1] < -1
    assert motions["ShiftDown"][0] > 1 and motions["ShiftUp"][0] < -1
    assert np.abs(motions["PulseSlow"]).max() < 1 and np.abs(motions["PulseFast"]).max() < 1
