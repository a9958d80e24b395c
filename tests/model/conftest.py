"""Session fixtures: random-weight torchvision Video Swin models saved as real .pth files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.model import torch_reference

NUM_CLASSES = 400


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


def random_clips(shape, seed=0) -> np.ndarray:
    """Normalised-looking float32 clips [B, T, H, W, 3]."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
