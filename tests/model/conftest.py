"""Session fixtures: random-weight torchvision Video Swin models saved as real .pth files."""

from __future__ import annotations

import pytest
import torch

from model import keras_env
from tests.model import torch_reference
from tests.model.helpers import NUM_CLASSES, TINY_CLASSES, TINY_SHAPE


@pytest.fixture(scope="session")
def torch_swin_t():
    return torch_reference.swin_t(NUM_CLASSES, seed=0)


@pytest.fixture(scope="session")
def swin_t_checkpoints(torch_swin_t, tmp_path_factory):
    """{'torchvision': plain state dict .pth, 'official': {'state_dict': renamed} .pth}."""
    root = tmp_path_factory.mktemp("checkpoints")
    paths = {"torchvision": root / "swin3d_t.pth", "official": root / "swin_tiny_official.pth"}
    torch.save(torch_swin_t.state_dict(), paths["torchvision"])
    torch.save(
        {"meta": {"epoch": 30}, "state_dict": torch_reference.official_state_dict(torch_swin_t)},
        paths["official"],
    )
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="session")
def torch_tiny():
    """torchvision SwinTransformer3d with the 'tiny' config, TINY_CLASSES classes."""
    from model.video_swin import get_config

    return torch_reference.from_config(get_config("tiny"), num_classes=TINY_CLASSES, seed=3)


@pytest.fixture(scope="session")
def tiny_checkpoints(torch_tiny, tmp_path_factory):
    """Tiny .pth files written by torch: 'official' (mmaction layout, with meta), 'torchvision',
    and 'official_no_head' (backbone only, as the ImageNet-pretrained releases are)."""
    root = tmp_path_factory.mktemp("tiny_checkpoints")
    official = torch_reference.official_state_dict(torch_tiny)
    meta = {"epoch": 30, "iter": 1200, "config": "model = dict(type='Recognizer3D')"}
    paths = {
        "official": root / "tiny_official.pth",
        "torchvision": root / "tiny_torchvision.pth",
        "official_no_head": root / "tiny_official_no_head.pth",
    }
    torch.save({"meta": meta, "state_dict": official}, paths["official"])
    torch.save(torch_tiny.state_dict(), paths["torchvision"])
    no_head = {k: v for k, v in official.items() if not k.startswith("cls_head.")}
    torch.save({"meta": meta, "state_dict": no_head}, paths["official_no_head"])
    return {k: str(v) for k, v in paths.items()}


_WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None  # from here on, `import torch` raises ImportError
import numpy as np
from model import convert
for argv in {jobs!r}:
    assert convert.main(argv) == 0, argv
for checkpoint, npz in {reads!r}:
    state, fmt = convert.load_checkpoint(checkpoint)
    np.savez(npz, format=fmt, **state)
loaded = sorted(m for m, v in sys.modules.items() if m.split(".")[0] in ("torch", "torchvision")
                and v is not None)
assert not loaded, loaded
"""


@pytest.fixture(scope="session")
def tiny_converted(tiny_checkpoints, tmp_path_factory):
    """Work done in ONE process where `import torch` fails: `python -m model.convert` of the
    official .pth ('official': dir, with the backbone module in dir/backbone), and
    load_checkpoint of each .pth saved as .npz ('<format>_npz': {torchvision key: array})."""
    import os
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("tiny_converted")
    outs, jobs, reads = {}, [], []
    outs["official"] = str(root / "official")
    argv = ["--checkpoint", tiny_checkpoints["official"], "--variant", "tiny"]
    argv += ["--output", outs["official"], "--frames", str(TINY_SHAPE[0])]
    jobs.append(argv + ["--size", str(TINY_SHAPE[1]), str(TINY_SHAPE[2])])
    for fmt in ("official", "torchvision"):
        outs[f"{fmt}_npz"] = str(root / f"{fmt}.npz")
        reads.append((tiny_checkpoints[fmt], outs[f"{fmt}_npz"]))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = keras_env.child_env(PYTHONPATH=repo)
    subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH.format(jobs=jobs, reads=reads)],
        env=env,
        cwd=repo,
        check=True,
        timeout=600,
    )
    return outs


@pytest.fixture(scope="session")
def tiny_converted_loaded(tiny_converted):
    """tf.saved_model.load of tiny_converted['official'] (loading restores every traced
    function, gradients included: do it once)."""
    import tensorflow as tf

    return tf.saved_model.load(tiny_converted["official"])
