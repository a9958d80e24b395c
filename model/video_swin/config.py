"""Video Swin Transformer configurations: the released variants and tiny CPU test models."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class VideoSwinConfig:
    """Hyper-parameters of one Video Swin variant (weights never depend on the clip size).

    window_size is the CONFIGURED window (T, H, W); each stage shrinks it to the feature size where
    the feature map is smaller, but the relative-position-bias table is always sized for this one.
    """

    name: str
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: tuple[int, int, int] = (8, 7, 7)
    patch_size: tuple[int, int, int] = (2, 4, 4)
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1
    head_dropout: float = 0.5
    in_channels: int = 3
    layer_norm_epsilon: float = 1e-5

    def __post_init__(self) -> None:
        if len(self.depths) != len(self.num_heads):
            raise ValueError(
                f"{self.name}: depths {self.depths} and num_heads {self.num_heads} differ"
            )
        for i, heads in enumerate(self.num_heads):
            if (self.embed_dim * 2**i) % heads:
                raise ValueError(f"{self.name}: stage {i + 1} dim not divisible by {heads} heads")

    @property
    def num_features(self) -> int:
        """Channels of the final feature map."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    def replace(self, **changes) -> VideoSwinConfig:
        return dataclasses.replace(self, **changes)


_STD_HEADS_T = (3, 6, 12, 24)
_STD_HEADS_B = (4, 8, 16, 32)

VARIANTS: dict[str, VideoSwinConfig] = {
    c.name: c
    for c in (
        VideoSwinConfig("swin_t", 96, (2, 2, 6, 2), _STD_HEADS_T, drop_path_rate=0.1),
        VideoSwinConfig("swin_s", 96, (2, 2, 18, 2), _STD_HEADS_T, drop_path_rate=0.1),
        VideoSwinConfig("swin_b", 128, (2, 2, 18, 2), _STD_HEADS_B, drop_path_rate=0.3),
        VideoSwinConfig(
            "swin_b_ssv2",
            128,
            (2, 2, 18, 2),
            _STD_HEADS_B,
            window_size=(16, 7, 7),
            drop_path_rate=0.4,
        ),
        # CPU test models: two blocks per stage so every stage has a shifted block.
        VideoSwinConfig("tiny", 24, (2, 2, 2, 2), (1, 2, 3, 6), window_size=(8, 7, 7)),
        VideoSwinConfig("tiny_w4", 24, (2, 2, 2, 2), (1, 2, 3, 6), window_size=(4, 4, 4)),
        # For tests of the training machinery (strategies, resuming, TFJob replicas), where a
        # model's depth only adds tracing time: two stages of one block (one patch merging).
        VideoSwinConfig("micro", 16, (1, 1), (1, 2), window_size=(4, 4, 4)),
    )
}


def get_config(config_or_name: VideoSwinConfig | str) -> VideoSwinConfig:
    """Returns a config from a VARIANTS name, or the config itself."""
    if isinstance(config_or_name, VideoSwinConfig):
        return config_or_name
    try:
        return VARIANTS[config_or_name]
    except KeyError:
        raise ValueError(
            f"unknown Video Swin variant {config_or_name!r}; known: {sorted(VARIANTS)}"
        ) from None
