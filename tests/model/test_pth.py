"""The torch-free .pth reader: same arrays as torch.load, parity without torch, hostile files."""

from __future__ import annotations

import collections
import os
import warnings
import zipfile

import numpy as np
import pytest
import tensorflow as tf
import torch

from model import pth
from model.convert import load_torch_state_dict
from model.pth import CheckpointError
from model.video_swin import build_classifier
from tests.model import torch_reference
from tests.model.helpers import TINY_CLASSES, TINY_SHAPE, random_clips


def test_reads_what_torch_load_reads(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = collections.OrderedDict(
        f32=torch.randn(3, 5),
        f16=torch.randn(7).half(),
        bf16=torch.randn(2, 3).to(torch.bfloat16),
        f64=torch.randn(2).double(),
        i64=torch.tensor([-(2**40), 3]),
        i8=torch.tensor([-3, 4], dtype=torch.int8),
        u8=torch.tensor([200, 1], dtype=torch.uint8),
        flags=torch.tensor([True, False]),
        scalar=torch.tensor(2.5),
        empty=torch.zeros(0, 4),
        transposed=base.t(),  # strides (1, 6)
        offset_view=base[1:3, 2:5],  # storage offset 8, shared storage
        base=base,
        param=torch.nn.Parameter(torch.randn(2, 2)),
    )
    meta = {"epoch": 7, "name": b"bytes", "tags": {1, 2}, "lr": [0.1, 1e-3], "ok": None}
    path = tmp_path / "mixed.pth"
    torch.save({"meta": meta, "state_dict": state}, path)
    got = pth.read(str(path))
    want = torch.load(path, weights_only=True)
    assert got["meta"] == meta
    assert list(got["state_dict"]) == list(state)
    for key, tensor in want["state_dict"].items():
        expected = tensor.detach()
        expected = (expected.float() if expected.dtype == torch.bfloat16 else expected).numpy()
        array = got["state_dict"][key]
        assert isinstance(array, np.ndarray) and array.dtype == expected.dtype, key
        np.testing.assert_array_equal(array, expected, err_msg=key)
    assert got["state_dict"]["offset_view"].flags.c_contiguous  # a copy, not a view of the zip


def test_official_and_torchvision_match_torch_without_torch(
    tiny_converted, tiny_converted_loaded, torch_tiny
):
    """tiny_converted read both .pth files and ran `python -m model.convert` on the official
    one in a process where `import torch` failed."""
    clips = random_clips((2, *TINY_SHAPE), seed=11)
    ref = torch_reference.run(torch_tiny, clips)
    signatures = tiny_converted_loaded.signatures
    logits = signatures["serving_default"](clips=tf.constant(clips))["logits"].numpy()
    assert logits.shape == (2, TINY_CLASSES)
    np.testing.assert_allclose(logits, ref["logits"], atol=1e-4, rtol=0)
    got = signatures["features"](clips=tf.constant(clips))["features"].numpy()
    np.testing.assert_allclose(got, ref["features"], atol=1e-4, rtol=0)
    expected = {k: v.numpy() for k, v in torch_tiny.state_dict().items()}
    for fmt in ("official", "torchvision"):
        with np.load(tiny_converted[f"{fmt}_npz"]) as npz:
            assert str(npz["format"]) == fmt
            state = {k: npz[k] for k in npz.files if k != "format"}
        assert sorted(state) == sorted(expected)
        for key, value in expected.items():
            np.testing.assert_array_equal(state[key], value, err_msg=f"{fmt}: {key}")
        model = build_classifier("tiny", TINY_CLASSES, TINY_SHAPE)
        load_torch_state_dict(model, state)
        got = model(clips, training=False).numpy()
        np.testing.assert_allclose(got, ref["logits"], atol=1e-4, rtol=0, err_msg=fmt)


# ---------------------------------------------------------------- hostile and broken files


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Custom:  # any class of the writer's: loading it would import and call its code
    pass


def test_pickle_calling_os_system_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "x": _RunsShell(marker)}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused: .*'(posix|os)\.system'"):
        pth.read(str(path))
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload, global_name",
    [
        (_Custom(), "tests.model.test_pth._Custom"),
        (collections.defaultdict(list), "collections.defaultdict"),
        (print, "builtins.print"),
    ],
)
def test_unexpected_global_is_refused_and_named(tmp_path, payload, global_name):
    path = tmp_path / "odd.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": payload}, path)
    with pytest.raises(CheckpointError, match=rf"odd\.pth: refused: .*'{global_name}'"):
        pth.read(str(path))


def _rewrite(src, dst, edit):
    """Copies the zip at src to dst, passing each (name, data) through edit (None drops it)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info, data)


@pytest.fixture
def plain_pth(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save({"w": torch.arange(6, dtype=torch.float32)}, path)
    return path


def test_missing_storage_entry_is_refused(plain_pth, tmp_path):
    path = tmp_path / "missing.pth"
    _rewrite(plain_pth, path, lambda name, data: None if name.endswith("/data/0") else data)
    with pytest.raises(
        CheckpointError, match=r"missing\.pth: storage entry plain/data/0 is missing"
    ):
        pth.read(str(path))


def test_short_storage_entry_is_refused(plain_pth, tmp_path):
    path = tmp_path / "short.pth"
    _rewrite(plain_pth, path, lambda name, data: data[:10] if name.endswith("/data/0") else data)
    with pytest.raises(
        CheckpointError, match=r"short\.pth: .*plain/data/0 holds 10 bytes.* need 24"
    ):
        pth.read(str(path))


class _Oversized:
    """Pickles as a (3, 4) tensor over a 6-element storage, which torch.save writes unchecked."""

    def __reduce__(self):
        with warnings.catch_warnings():  # TypedStorage is deprecated, but is what torch pickles
            warnings.simplefilter("ignore", UserWarning)
            storage = torch.zeros(6).storage()
        return torch._utils._rebuild_tensor_v2, (storage, 0, (3, 4), (4, 1), False, {})


def test_shape_larger_than_storage_is_refused(tmp_path):
    path = tmp_path / "shape.pth"
    torch.save({"w": _Oversized()}, path)
    with pytest.raises(CheckpointError, match=r"shape\.pth: .*\(3, 4\).* needs 12 elements .* 6"):
        pth.read(str(path))


def test_legacy_and_foreign_files_are_refused(tmp_path):
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"legacy\.pth: a legacy .*torch\.save\(torch\.load"):
        pth.read(str(legacy))
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"notes\.pth: not a PyTorch checkpoint"):
        pth.read(str(text))
    other_zip = tmp_path / "other.pth"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match=r"other\.pth: a zip, but not a PyTorch checkpoint"):
        pth.read(str(other_zip))
