"""Video Swin backbone, classifier head and the public builders."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from model.video_swin.config import VideoSwinConfig, get_config
from model.video_swin.layers import Layer, LayerNorm, PatchEmbed3D, PatchMerging, VideoSwinStage

STAGE_KEYS = ("stage1", "stage2", "stage3", "stage4")


class VideoSwinBackbone(Layer):
    """[B, T, H, W, 3] normalised clip -> dict of feature maps.

    Keys: 'stage{i}' the output of stage i's blocks (before patch merging),
    [B, ceil(T/2), H/(4*2^(i-1)), W/(4*2^(i-1)), C*2^(i-1)] up to padding; 'features' the
    final LayerNorm of the last stage.
    """

    def __init__(self, config: VideoSwinConfig, recompute: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        eps = config.layer_norm_epsilon
        self.patch_embed = PatchEmbed3D(
            config.patch_size, config.embed_dim, eps, name="patch_embed"
        )
        # Stochastic depth grows linearly over all blocks: linspace(0, rate, sum(depths)).
        rates = np.linspace(0.0, config.drop_path_rate, sum(config.depths)).tolist()
        self.stages, self.merges = [], []
        start = 0
        for i, (depth, heads) in enumerate(zip(config.depths, config.num_heads, strict=True)):
            dim = config.embed_dim * 2**i
            self.stages.append(
                VideoSwinStage(
                    dim,
                    depth,
                    heads,
                    config.window_size,
                    rates[start : start + depth],
                    mlp_ratio=config.mlp_ratio,
                    epsilon=eps,
                    recompute=recompute,
                    name=f"stage{i + 1}",
                )
            )
            start += depth
            if i < len(config.depths) - 1:
                self.merges.append(PatchMerging(dim, eps, name=f"merge{i + 1}"))
        self.norm = LayerNorm(epsilon=eps, name="norm")

    def call(self, x, training=None):
        outputs = {}
        x = self.patch_embed(x)
        for i, stage in enumerate(self.stages):
            x = stage(x, training=training)
            outputs[STAGE_KEYS[i] if i < len(STAGE_KEYS) else f"stage{i + 1}"] = x
            if i < len(self.merges):
                x = self.merges[i](x)
        outputs["features"] = self.norm(x)
        return outputs


class ClassifierHead(Layer):
    """[B, T', H', W', C] -> mean over T', H', W' -> Dropout (training only) -> logits [B, K].

    The logits layer runs in float32 under mixed precision.
    """

    def __init__(self, num_classes: int, dropout: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.dropout = keras.layers.Dropout(dropout, name="dropout")
        self.fc_cls = keras.layers.Dense(num_classes, dtype="float32", name="fc_cls")

    def call(self, x, training=None):
        x = tf.reduce_mean(tf.cast(x, tf.float32), axis=[1, 2, 3])
        return self.fc_cls(self.dropout(x, training=training))


def _input(config: VideoSwinConfig, input_shape) -> keras.Input:
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 4 or input_shape[-1] != config.in_channels:
        raise ValueError(f"input_shape must be (T, H, W, {config.in_channels}); got {input_shape}")
    return keras.Input(shape=input_shape, dtype=tf.float32, name="clips")


def build_backbone(
    config_or_name: VideoSwinConfig | str,
    input_shape=(32, 224, 224, 3),
    recompute: bool = False,
    drop_path_rate: float | None = None,
    name: str | None = None,
) -> keras.Model:
    """Model: float [B, T, H, W, 3] (normalised) -> dict 'stage1'..'stage4', 'features'."""
    config = get_config(config_or_name)
    if drop_path_rate is not None:
        config = config.replace(drop_path_rate=drop_path_rate)
    inputs = _input(config, input_shape)
    outputs = VideoSwinBackbone(config, recompute=recompute, name="backbone")(inputs)
    return keras.Model(inputs, outputs, name=name or f"video_swin_{config.name}_backbone")


def build_classifier(
    config_or_name: VideoSwinConfig | str,
    num_classes: int,
    input_shape=(32, 224, 224, 3),
    recompute: bool = False,
    drop_path_rate: float | None = None,
    head_dropout: float | None = None,
    name: str | None = None,
) -> keras.Model:
    """Model: float [B, T, H, W, 3] (normalised, channels-last) -> logits [B, num_classes].

    Layers 'backbone' (VideoSwinBackbone) and 'head' (ClassifierHead); see feature_model().
    """
    config = get_config(config_or_name)
    if drop_path_rate is not None:
        config = config.replace(drop_path_rate=drop_path_rate)
    if head_dropout is not None:
        config = config.replace(head_dropout=head_dropout)
    inputs = _input(config, input_shape)
    features = VideoSwinBackbone(config, recompute=recompute, name="backbone")(inputs)
    logits = ClassifierHead(num_classes, config.head_dropout, name="head")(features["features"])
    return keras.Model(inputs, logits, name=name or f"video_swin_{config.name}")


def feature_model(model: keras.Model) -> keras.Model:
    """The backbone's dict of feature maps from a built classifier/backbone, sharing weights."""
    return keras.Model(
        model.inputs, model.get_layer("backbone").output, name=f"{model.name}_features"
    )
