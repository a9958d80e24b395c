"""Video Swin Transformer (Liu et al. 2022) in tf_keras, numerically faithful to the reference."""

from model.video_swin.config import VARIANTS, VideoSwinConfig, get_config
from model.video_swin.layers import (
    Mlp,
    PatchEmbed3D,
    PatchMerging,
    SwinTransformerBlock3D,
    VideoSwinStage,
    WindowAttention3D,
)
from model.video_swin.model import (
    STAGE_KEYS,
    ClassifierHead,
    VideoSwinBackbone,
    build_backbone,
    build_classifier,
    feature_model,
)

__all__ = [
    "STAGE_KEYS",
    "VARIANTS",
    "ClassifierHead",
    "Mlp",
    "PatchEmbed3D",
    "PatchMerging",
    "SwinTransformerBlock3D",
    "VideoSwinBackbone",
    "VideoSwinConfig",
    "VideoSwinStage",
    "WindowAttention3D",
    "build_backbone",
    "build_classifier",
    "feature_model",
    "get_config",
]
