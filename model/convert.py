"""Convert PyTorch Video Swin checkpoints (official Video-Swin or torchvision swin3d_*) to TF.

    python -m model.convert --checkpoint swin_tiny_patch244_window877_kinetics400_1k.pth \
        --variant swin_t --output converted/swin_t [--frames 32 --size 224 224] [--no-head]

Writes DIR/ (a TF SavedModel: 'serving_default' clips -> {'logits'} and 'features' clips ->
{'features'}; also a TF Hub Reusable SavedModel, see model/hub.py), DIR/backbone/ (the backbone
alone, a TF Hub feature module), DIR/keras_weights.h5 for build_classifier(...).load_weights,
DIR/video_swin.json and DIR/README.md (the model card). The .pth is read by model/pth.py, without
PyTorch and without executing anything in it. Every tensor of the checkpoint is accounted for: a missing key, an unexpected
key or a shape mismatch is an error naming the key.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping

import numpy as np

from model import pth
from model.pth import CheckpointError
from model.video_swin import windows as win

KERAS_WEIGHTS = "keras_weights.h5"
METADATA = "video_swin.json"


# ---------------------------------------------------------------- reading checkpoints


def _to_numpy(value, key: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise CheckpointError(f"{key}: expected a tensor, got {type(value).__name__}")
    return value.astype(np.float32, copy=False) if value.dtype.kind == "f" else value


_OFFICIAL_RULES = (
    (re.compile(r"^backbone\.patch_embed\.(.*)$"), r"patch_embed.\1"),
    (re.compile(r"^backbone\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.(.*)$"), "{b}.mlp.0.\\3"),
    (re.compile(r"^backbone\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.(.*)$"), "{b}.mlp.3.\\3"),
    (re.compile(r"^backbone\.layers\.(\d+)\.blocks\.(\d+)\.(.*)$"), "{b}.\\3"),
    (re.compile(r"^backbone\.layers\.(\d+)\.downsample\.(.*)$"), "{d}.\\2"),
    (re.compile(r"^backbone\.norm\.(.*)$"), r"norm.\1"),
    (re.compile(r"^cls_head\.fc_cls\.(.*)$"), r"head.\1"),
)


def official_to_torchvision_key(key: str) -> str | None:
    """Official Video-Swin key -> torchvision swin3d key (None when no rule applies)."""
    for pattern, template in _OFFICIAL_RULES:
        m = pattern.match(key)
        if not m:
            continue
        if "{b}" in template:
            i, j = int(m.group(1)), int(m.group(2))
            template = template.replace("{b}", f"features.{2 * i}.{j}")
        elif "{d}" in template:
            template = template.replace("{d}", f"features.{2 * int(m.group(1)) + 1}")
        return m.expand(template)
    return None


def load_checkpoint(path: str) -> tuple[dict[str, np.ndarray], str]:
    """Reads a .pth without torch -> ({torchvision-style key: array}, 'official' | 'torchvision').

    model.pth's restricted reader executes nothing in the file (see its docstring).

    Official keys are renamed to torchvision's (see VIDEO_SWIN_NUMERICS.md); keys no rule knows
    keep their name so that loading reports them as unexpected.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    ckpt = pth.read(path)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(ckpt).__name__}")
    state = ckpt
    for wrapper in ("state_dict", "model"):
        if wrapper in state and isinstance(state[wrapper], Mapping):
            state = state[wrapper]
            break
    keys = list(state)
    if any(k.startswith("backbone.") for k in keys):
        fmt = "official"
        renamed = {}
        for k in keys:
            new = official_to_torchvision_key(k) or k
            renamed[new] = _to_numpy(state[k], k)
        return renamed, fmt
    if any(k.startswith(("patch_embed.", "features.")) for k in keys):
        return {k: _to_numpy(v, k) for k, v in state.items()}, "torchvision"
    raise CheckpointError(
        f"{path}: neither an official Video-Swin checkpoint (keys 'backbone.*') nor a torchvision "
        f"swin3d state dict (keys 'patch_embed.*', 'features.*'); first keys: {keys[:5]}"
    )


# ---------------------------------------------------------------- assigning to Keras


def _conv3d(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 4, 1, 0))  # (o, i, kd, kh, kw) -> (kd, kh, kw, i, o)


def _linear(w: np.ndarray) -> np.ndarray:
    return np.transpose(w)  # (out, in) -> (in, out)


def _same(w: np.ndarray) -> np.ndarray:
    return w


def _norm(prefix: str, layer) -> list:
    return [(f"{prefix}.weight", layer.gamma, _same), (f"{prefix}.bias", layer.beta, _same)]


def _dense(prefix: str, layer) -> list:
    out = [(f"{prefix}.weight", layer.kernel, _linear)]
    if layer.use_bias:
        out.append((f"{prefix}.bias", layer.bias, _same))
    return out


def weight_plan(backbone, head=None) -> list[tuple[str, object, object]]:
    """[(torchvision key, Keras variable, torch->keras layout fn)] for every weight."""
    plan = [
        ("patch_embed.proj.weight", backbone.patch_embed.proj.kernel, _conv3d),
        ("patch_embed.proj.bias", backbone.patch_embed.proj.bias, _same),
        *_norm("patch_embed.norm", backbone.patch_embed.norm),
    ]
    for i, stage in enumerate(backbone.stages):
        for j, block in enumerate(stage.blocks):
            p = f"features.{2 * i}.{j}"
            plan += _norm(f"{p}.norm1", block.norm1)
            plan += _dense(f"{p}.attn.qkv", block.attn.qkv)
            plan += _dense(f"{p}.attn.proj", block.attn.proj)
            plan.append(
                (
                    f"{p}.attn.relative_position_bias_table",
                    block.attn.relative_position_bias_table,
                    _same,
                )
            )
            plan += _norm(f"{p}.norm2", block.norm2)
            plan += _dense(f"{p}.mlp.0", block.mlp.fc1)
            plan += _dense(f"{p}.mlp.3", block.mlp.fc2)
        if i < len(backbone.merges):
            merge = backbone.merges[i]
            plan += _norm(f"features.{2 * i + 1}.norm", merge.norm)
            plan += _dense(f"features.{2 * i + 1}.reduction", merge.reduction)
    plan += _norm("norm", backbone.norm)
    if head is not None:
        plan += _dense("head", head.fc_cls)
    return plan


def _position_index_keys(backbone) -> dict[str, tuple[int, int, int]]:
    return {
        f"features.{2 * i}.{j}.attn.relative_position_index": tuple(block.attn.window_size)
        for i, stage in enumerate(backbone.stages)
        for j, block in enumerate(stage.blocks)
    }


def load_torch_state_dict(model, state_dict: Mapping[str, np.ndarray], head: bool = True) -> int:
    """Assigns a torchvision-keyed state dict to a model from build_classifier/build_backbone.

    head=False ignores 'head.*' (the backbone is warm-started, the head stays fresh). The
    relative_position_index buffers are not weights (recomputed from the window) but are checked
    against ours, so a checkpoint for another window size is caught. Returns #values assigned.
    """
    backbone = model.get_layer("backbone")
    head_layer = None
    if head:
        try:
            head_layer = model.get_layer("head")
        except ValueError:
            head_layer = None
    plan = weight_plan(backbone, head_layer)
    expected = {key for key, _, _ in plan}
    index_keys = _position_index_keys(backbone)
    missing = sorted(k for k in expected if k not in state_dict)
    if missing:
        raise CheckpointError(
            f"checkpoint is missing {len(missing)} weight(s) for {backbone.config.name}: "
            f"{missing[:8]}{' ...' if len(missing) > 8 else ''}"
        )
    ignorable = set(index_keys)
    if not head or head_layer is None:
        ignorable |= {k for k in state_dict if k.startswith("head.")}
    unexpected = sorted(k for k in state_dict if k not in expected and k not in ignorable)
    if unexpected:
        raise CheckpointError(
            f"checkpoint has {len(unexpected)} unexpected key(s) for {backbone.config.name}: "
            f"{unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}"
        )
    for key, window in index_keys.items():
        if key in state_dict:
            ours = win.relative_position_index(window)
            theirs = np.asarray(state_dict[key])
            if theirs.shape != ours.shape or not np.array_equal(theirs, ours):
                raise CheckpointError(
                    f"{key}: relative_position_index of shape {theirs.shape} does not match the "
                    f"configured window {window} (expected shape {ours.shape}); wrong --variant?"
                )
    values = []
    for key, variable, layout in plan:
        value = layout(np.asarray(state_dict[key], dtype=np.float32))
        if tuple(value.shape) != tuple(variable.shape):
            raise CheckpointError(
                f"{key}: shape mismatch: model expects {tuple(variable.shape)} (Keras layout), "
                f"checkpoint has {tuple(state_dict[key].shape)} (PyTorch layout) -> "
                f"{tuple(value.shape)} after conversion"
            )
        values.append((variable, value))
    for variable, value in values:
        variable.assign(value)
    return len(values)


def num_classes_of(state_dict: Mapping[str, np.ndarray]) -> int | None:
    """Classes of the checkpoint's head (rows of head.weight), None without a head."""
    weight = state_dict.get("head.weight")
    return None if weight is None else int(weight.shape[0])


# ---------------------------------------------------------------- export


def export_saved_model(model, output_dir: str, metadata: dict | None = None) -> None:
    """Writes a Reusable SavedModel (TF Hub) with 'serving_default' and 'features' signatures,
    plus Keras weights, the metadata JSON and a model card; a classifier's backbone is written
    again, alone, under BACKBONE_DIR/ (a TF Hub feature module).

    Only the variables and traced functions are saved (not Keras' per-layer traces), so the
    export is quick and needs nothing from this repo to serve or fine-tune.
    """
    import tensorflow as tf

    from model import hub
    from model.video_swin import feature_model

    input_shape = tuple(model.input_shape[1:])
    clips = tf.TensorSpec([None, *input_shape], tf.float32, name="clips")
    has_head = any(layer.name == "head" for layer in model.layers)
    # Each Reusable module traces its model twice (training True / False); the signatures call
    # those traces instead of tracing again.
    backbone = hub.reusable_module(feature_model(model), input_shape)
    module = hub.reusable_module(model, input_shape) if has_head else backbone

    @tf.function(input_signature=[clips])
    def serve_features(x):
        return {"features": backbone.__call__(x, training=False)}

    @tf.function(input_signature=[clips])
    def serve(x):
        return {"logits": module.__call__(x, training=False)}

    signatures = {"serving_default": serve if has_head else serve_features}
    signatures["features"] = serve_features
    os.makedirs(output_dir, exist_ok=True)
    tf.saved_model.save(module, output_dir, signatures=signatures)
    if has_head:
        tf.saved_model.save(
            backbone,
            os.path.join(output_dir, hub.BACKBONE_DIR),
            signatures={"serving_default": serve_features},
        )
    model.save_weights(os.path.join(output_dir, KERAS_WEIGHTS))
    metadata = metadata or {}
    with open(os.path.join(output_dir, METADATA), "w") as f:
        json.dump(metadata, f, indent=2, sort_keys=True)
    if {"variant", "input_shape", "checkpoint"} <= set(metadata):
        with open(os.path.join(output_dir, hub.MODEL_CARD), "w") as f:
            f.write(hub.model_card(metadata))


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(
    checkpoint: str,
    variant: str,
    output_dir: str,
    frames: int = 32,
    size: tuple[int, int] = (224, 224),
    head: bool = True,
) -> dict:
    """Checkpoint -> SavedModel + Keras weights + JSON. Returns the metadata written."""
    from model.video_swin import build_backbone, build_classifier, get_config

    config = get_config(variant)
    state_dict, fmt = load_checkpoint(checkpoint)
    num_classes = num_classes_of(state_dict) if head else None
    if head and num_classes is None:
        raise CheckpointError(f"{checkpoint}: no classifier head (head.weight); pass --no-head")
    input_shape = (frames, size[0], size[1], config.in_channels)
    if head:
        model = build_classifier(config, num_classes, input_shape)
    else:
        model = build_backbone(config, input_shape)
    load_torch_state_dict(model, state_dict, head=head)
    metadata = {
        "variant": config.name,
        "num_classes": num_classes,
        "input_shape": list(input_shape),
        "num_parameters": int(model.count_params()),
        "checkpoint": os.path.abspath(checkpoint),
        "checkpoint_format": fmt,
        "checkpoint_sha256": _sha256(checkpoint),
        "keras_weights": KERAS_WEIGHTS,
        "signatures": {
            "serving_default": "logits" if head else "features",
            "features": "features",
        },
    }
    export_saved_model(model, output_dir, metadata)
    return metadata


def main(argv: list[str] | None = None) -> int:
    from model.video_swin import VARIANTS

    parser = argparse.ArgumentParser(
        prog="python -m model.convert", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--checkpoint", required=True, help=".pth (official or torchvision)")
    parser.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    parser.add_argument("--output", required=True, help="directory for the SavedModel")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    parser.add_argument("--no-head", action="store_true", help="drop the classifier head")
    args = parser.parse_args(argv)
    try:
        meta = convert(
            args.checkpoint,
            args.variant,
            args.output,
            args.frames,
            tuple(args.size),
            not args.no_head,
        )
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"variant {meta['variant']} ({meta['checkpoint_format']} checkpoint): "
        f"{meta['num_parameters']:,} parameters, "
        f"classes {meta['num_classes'] if meta['num_classes'] is not None else 'none (no head)'}, "
        f"input [batch, {', '.join(map(str, meta['input_shape']))}] -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
