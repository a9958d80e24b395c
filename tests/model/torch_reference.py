"""PyTorch reference models for the parity tests (torchvision's Video Swin, random weights)."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.models.video import swin3d_t
from torchvision.models.video.swin_transformer import SwinTransformer3d

from model.convert import official_to_torchvision_key
from model.video_swin import VideoSwinConfig


def randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial values everywhere (LayerNorm affine, biases, bias tables) so no error hides."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name:
                p.copy_(noise * 0.3 + (1.0 if name.endswith("weight") else 0.0))
            elif "relative_position_bias_table" in name:
                p.copy_(noise)  # far larger than the std-0.02 init, so a wrong index shows
            elif name.endswith("bias"):
                p.copy_(noise * 0.1)
    return model.eval()


def swin_t(num_classes: int = 400, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return randomise(swin3d_t(num_classes=num_classes), seed)


def from_config(config: VideoSwinConfig, num_classes: int = 7, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = SwinTransformer3d(
        patch_size=list(config.patch_size),
        embed_dim=config.embed_dim,
        depths=list(config.depths),
        num_heads=list(config.num_heads),
        window_size=list(config.window_size),
        stochastic_depth_prob=config.drop_path_rate,
        num_classes=num_classes,
    )
    return randomise(model, seed)


def run(model: torch.nn.Module, clips_nthwc: np.ndarray) -> dict[str, np.ndarray]:
    """Stage outputs, final features and logits in one eval forward, channels-last numpy."""
    x = torch.from_numpy(np.ascontiguousarray(np.transpose(clips_nthwc, (0, 4, 1, 2, 3))))
    out = {}
    with torch.no_grad():
        y = model.pos_drop(model.patch_embed(x))
        for i, layer in enumerate(model.features):
            y = layer(y)
            if i % 2 == 0:
                out[f"stage{i // 2 + 1}"] = y.numpy()
        y = model.norm(y)
        out["features"] = y.numpy()
        pooled = torch.flatten(model.avgpool(y.permute(0, 4, 1, 2, 3)), 1)
        out["logits"] = model.head(pooled).numpy()
    return out


def official_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """torchvision state dict renamed to the official Video-Swin key names."""
    inverse = {}
    for key, value in model.state_dict().items():
        official = _to_official(key)
        assert official_to_torchvision_key(official) == key, (key, official)
        inverse[official] = value
    return inverse


def _to_official(key: str) -> str:
    parts = key.split(".")
    if parts[0] == "features":
        idx = int(parts[1])
        if idx % 2 == 0:
            rest = ".".join(parts[3:])
            rest = rest.replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
            return f"backbone.layers.{idx // 2}.blocks.{parts[2]}.{rest}"
        return f"backbone.layers.{idx // 2}.downsample.{'.'.join(parts[2:])}"
    if parts[0] == "head":
        return f"cls_head.fc_cls.{parts[1]}"
    return f"backbone.{key}"


def official_checkpoint_from_keras(classifier, path: str) -> None:
    """Saves a build_classifier model's weights as an official Video-Swin .pth, written by torch
    (the inverse of model.convert's layouts): a pretrained checkpoint a test can start from."""
    from model import convert

    config = classifier.get_layer("backbone").config
    num_classes = classifier.get_layer("head").num_classes
    inverse = {
        convert._conv3d: lambda w: np.transpose(w, (4, 3, 0, 1, 2)),
        convert._linear: np.transpose,
        convert._same: lambda w: w,
    }
    state = {
        key: torch.from_numpy(np.ascontiguousarray(inverse[layout](variable.numpy())))
        for key, variable, layout in convert.weight_plan(
            classifier.get_layer("backbone"), classifier.get_layer("head")
        )
    }
    model = from_config(config, num_classes)
    model.load_state_dict(state, strict=False)  # relative_position_index buffers stay torch's
    torch.save({"meta": {"source": "keras"}, "state_dict": official_state_dict(model)}, path)
