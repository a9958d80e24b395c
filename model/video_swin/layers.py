"""Video Swin Transformer layers (Keras 2 / tf_keras), channels-last [B, T, H, W, C].

One layer per concept of the paper. Only the batch dimension is dynamic; T, H, W are static per
built model, so window sizes, padding, masks and bias indices are resolved at trace time.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from model.video_swin import ops
from model.video_swin import windows as win


class Layer(keras.layers.Layer):
    """Base of the Video Swin layers: plain Python call, no AutoGraph conversion.

    All control flow here is on static Python values, and converting every nested call made
    building a model several times slower. (Overrides a private tf_keras hook.)
    """

    def _should_use_autograph(self):
        return False


def _pad_end(x: tf.Tensor, pads: tuple[int, ...]) -> tf.Tensor:
    """Zero-pads the END of dims 1..len(pads) of a [B, ..., C] tensor."""
    if not any(pads):
        return x
    return tf.pad(x, [[0, 0], *[[0, p] for p in pads], [0, 0]])


def _static_dhw(x: tf.Tensor) -> tuple[int, int, int]:
    dhw = tuple(x.shape[1:4])
    if any(d is None for d in dhw):
        raise ValueError(f"Video Swin needs static T, H, W (only batch may be None); got {x.shape}")
    return dhw


def _build_sublayer(layer: keras.layers.Layer, shape) -> None:
    """Builds a sub-layer under its own name scope so weight names stay unique (h5 weights)."""
    with tf.name_scope(layer.name):
        layer.build(shape)


def _dense_rows(layer: keras.layers.Dense, x: tf.Tensor) -> tf.Tensor:
    """Applies a Dense layer to [..., C] as a rank-2 [rows, C] matmul -> [..., units].

    On rank > 2 inputs Keras' Dense goes through tensordot (extra reshapes/shape ops, bias added
    on the rank-N result); one reshape to rows and a plain MatMul + BiasAdd is simpler for TF.
    """
    out = layer(tf.reshape(x, [-1, x.shape[-1]]))
    return tf.reshape(out, [-1, *x.shape[1:-1], out.shape[-1]])


class LayerNorm(keras.layers.LayerNormalization):
    """Keras' LayerNormalization over the last axis (same weights and values), whose backward
    keeps only its input and row statistics (ops.layer_norm)."""

    def call(self, inputs):
        if self.axis != [inputs.shape.rank - 1]:
            raise ValueError(f"{self.name}: LayerNorm normalises the last axis, got {self.axis}")
        return ops.layer_norm(
            tf.cast(inputs, self.compute_dtype), self.gamma, self.beta, self.epsilon
        )


def _layer_norm(epsilon: float, name: str) -> LayerNorm:
    # Keras' default epsilon is 1e-3; the checkpoints were trained with 1e-5.
    return LayerNorm(epsilon=epsilon, name=name)


class PatchEmbed3D(Layer):
    """[B, T, H, W, 3] -> [B, ceil(T/pt), ceil(H/ph), ceil(W/pw), embed_dim].

    Zero-pads the end of T, H, W to multiples of the patch, applies the Conv3D with
    kernel = stride = patch, then LayerNorm. Because the patches do not overlap, the convolution is
    computed as patchify + matmul with the Conv3D's own kernel: identical maths, and it avoids
    TF's CPU Conv3DBackpropFilter, which took ~85% of a Swin-T training step.
    """

    def __init__(self, patch_size, embed_dim: int, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = tuple(patch_size)
        self.embed_dim = embed_dim
        self.proj = keras.layers.Conv3D(
            embed_dim, self.patch_size, strides=self.patch_size, padding="valid", name="proj"
        )
        self.norm = _layer_norm(epsilon, "norm")

    def build(self, input_shape):
        _build_sublayer(self.proj, (None, None, None, None, input_shape[-1]))
        _build_sublayer(self.norm, (None, None, None, None, self.embed_dim))
        super().build(input_shape)

    def call(self, x):
        x = _pad_end(x, win.pad_amounts(_static_dhw(x), self.patch_size))
        (t, h, w), c = _static_dhw(x), x.shape[-1]
        pt, ph, pw = self.patch_size
        nt, nh, nw = t // pt, h // ph, w // pw
        # [B, nt, pt, nh, ph, nw, pw, C] -> [B, nt, nh, nw, (pt, ph, pw, C)]: the kernel's order.
        x = tf.reshape(x, [-1, nt, pt, nh, ph, nw, pw, c])
        x = tf.reshape(
            tf.transpose(x, [0, 1, 3, 5, 2, 4, 6, 7]), [-1, nt, nh, nw, pt * ph * pw * c]
        )
        kernel = tf.reshape(self.proj.kernel, [pt * ph * pw * c, self.embed_dim])
        x = tf.nn.bias_add(tf.matmul(tf.reshape(x, [-1, pt * ph * pw * c]), kernel), self.proj.bias)
        return self.norm(tf.reshape(x, [-1, nt, nh, nw, self.embed_dim]))


# Logit elements (per batch element) of one attention group: 4 stage-1 windows of Swin-T
# (3 heads, 392 tokens), 7 MB in float32.
_ATTENTION_GROUP_ELEMENTS = 4 * 3 * 392 * 392


class WindowAttention3D(Layer):
    """Multi-head self-attention inside windows with a relative position bias.

    Input/output [B*num_windows, N, C], N = tokens of the (effective) window. The bias table has
    (2Wd-1)(2Wh-1)(2Ww-1) rows for the CONFIGURED window whatever the input size.
    """

    def __init__(self, dim: int, num_heads: int, window_size, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = tuple(window_size)
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = keras.layers.Dense(3 * dim, name="qkv")  # output rows [q; k; v], heads inside
        self.proj = keras.layers.Dense(dim, name="proj")

    def build(self, input_shape):
        rows = int(np.prod([2 * w - 1 for w in self.window_size]))
        self.relative_position_bias_table = self.add_weight(
            name="relative_position_bias_table",
            shape=(rows, self.num_heads),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype=tf.float32,
            experimental_autocast=False,  # stay float32 under mixed precision (bias added in f32)
        )
        _build_sublayer(self.qkv, (None, None, self.dim))
        _build_sublayer(self.proj, (None, None, self.dim))
        super().build(input_shape)

    def relative_position_bias(self, window: tuple[int, int, int]) -> tf.Tensor:
        """[heads, N, N] float32 bias for an effective window (top-left slice of the full index)."""
        index = win.sliced_position_index(self.window_size, tuple(window))
        n = index.shape[0]
        bias = tf.gather(self.relative_position_bias_table, index.reshape(-1))
        return tf.transpose(tf.reshape(bias, [n, n, self.num_heads]), [2, 0, 1])

    def call(self, x, window, num_windows: int, region=None):
        """x: [B*nW, N, C]; window: effective window; nW = num_windows; region: [nW, N] ids or None.

        The [B, nW, heads, N, N] logits are computed in groups of windows (ops.window_attention):
        that tensor is memory-bound (add, softmax; ~0.6 MB per window and head at N=392), and
        groups that stay in cache were ~1.7x faster on CPU than one pass over the whole tensor.
        """
        n, c, heads = x.shape[1], self.dim, self.num_heads
        qkv = tf.reshape(_dense_rows(self.qkv, x), [-1, num_windows, n, 3, heads, c // heads])
        group = max(1, _ATTENTION_GROUP_ELEMENTS // (heads * n * n))
        out = ops.window_attention(
            qkv, self.relative_position_bias(window), self.scale, group, region
        )  # [B, nW, N, heads, hd]
        return _dense_rows(self.proj, tf.reshape(out, [-1, n, c]))


class Mlp(Layer):
    """[..., C] -> fc1 -> exact (erf) GELU -> fc2 -> [..., C]."""

    def __init__(self, dim: int, hidden_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.fc1 = keras.layers.Dense(hidden_dim, name="fc1")
        self.fc2 = keras.layers.Dense(dim, name="fc2")
        self.dim, self.hidden_dim = dim, hidden_dim

    def build(self, input_shape):
        _build_sublayer(self.fc1, (None, self.dim))
        _build_sublayer(self.fc2, (None, self.hidden_dim))
        super().build(input_shape)

    def call(self, x):
        # Rank-2 matmuls, as in _dense_rows; GELU and fc2 in one op whose backward keeps fc1's
        # output only (ops.gelu_linear), with fc2's own weights.
        rows = self.fc1(tf.reshape(x, [-1, self.dim]))
        kernel, bias = (tf.convert_to_tensor(w) for w in (self.fc2.kernel, self.fc2.bias))
        rows = ops.gelu_linear(rows, kernel, bias)
        return tf.reshape(rows, [-1, *x.shape[1:]])


def drop_path_scale(x: tf.Tensor, rate: float) -> tf.Tensor:
    """[B, 1, 1, 1, 1] per-sample factor: 0 (dropped) or 1/(1-rate) (kept)."""
    keep = 1.0 - rate
    noise = tf.random.uniform([tf.shape(x)[0]] + [1] * (x.shape.rank - 1), dtype=tf.float32)
    return tf.cast(tf.floor(keep + noise) / keep, x.dtype)


class SwinTransformerBlock3D(Layer):
    """One (shifted-)window block: [B, T, H, W, C] -> same shape.

    x + DropPath(W-MSA(norm1(x))), then x + DropPath(MLP(norm2(x))). Window and shift shrink to
    the feature size per dimension; with recompute=True the block's activations are recomputed
    in the backward pass (tf.recompute_grad) and the drop-path draws are made outside so the
    recomputation sees the same ones.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size,
        shift_size,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        epsilon: float = 1e-5,
        recompute: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dim = dim
        self.window_size = tuple(window_size)
        self.shift_size = tuple(shift_size)
        self.drop_path = float(drop_path)
        self.recompute = recompute
        self.norm1 = _layer_norm(epsilon, "norm1")
        self.attn = WindowAttention3D(dim, num_heads, window_size, name="attn")
        self.norm2 = _layer_norm(epsilon, "norm2")
        self.mlp = Mlp(dim, int(dim * mlp_ratio), name="mlp")

    def build(self, input_shape):
        # Create every variable now: recompute_grad must never create variables.
        # LayerNormalization resolves its axis from the rank it was built with: build at rank 5.
        rank5 = (None, None, None, None, self.dim)
        for sub in (self.norm1, self.norm2, self.mlp):
            _build_sublayer(sub, rank5)
        _build_sublayer(self.attn, (None, None, self.dim))
        super().build(input_shape)

    def _shifted_window_attention(self, x: tf.Tensor) -> tf.Tensor:
        size = _static_dhw(x)
        c = x.shape[-1]
        window, shift = win.adjust_window_and_shift(size, self.window_size, self.shift_size)
        x = _pad_end(x, win.pad_amounts(size, window))
        padded = tuple(x.shape[1:4])
        shifted = any(shift)
        if shifted:
            x = tf.roll(x, shift=[-s for s in shift], axis=[1, 2, 3])
        nd, nh, nw = (p // w for p, w in zip(padded, window, strict=True))
        # Partition: [B, nd, wd, nh, wh, nw, ww, C] -> [B*nW, wd*wh*ww, C]
        x = tf.reshape(x, [-1, nd, window[0], nh, window[1], nw, window[2], c])
        x = tf.transpose(x, [0, 1, 3, 5, 2, 4, 6, 7])
        x = tf.reshape(x, [-1, int(np.prod(window)), c])
        region = win.shifted_window_regions(padded, window, shift) if shifted else None
        x = self.attn(x, window=window, num_windows=nd * nh * nw, region=region)
        # Reverse windows, roll back, crop the end padding.
        x = tf.reshape(x, [-1, nd, nh, nw, window[0], window[1], window[2], c])
        x = tf.transpose(x, [0, 1, 4, 2, 5, 3, 6, 7])
        x = tf.reshape(x, [-1, *padded, c])
        if shifted:
            x = tf.roll(x, shift=list(shift), axis=[1, 2, 3])
        if padded != size:
            x = x[:, : size[0], : size[1], : size[2], :]
        return x

    def _forward(self, x, scale1=None, scale2=None):
        y = self._shifted_window_attention(self.norm1(x))
        x = x + (y if scale1 is None else y * scale1)
        y = self.mlp(self.norm2(x))
        return x + (y if scale2 is None else y * scale2)

    def call(self, x, training=None):
        if not training:
            return self._forward(x)
        if self.drop_path > 0.0:
            scale1, scale2 = drop_path_scale(x, self.drop_path), drop_path_scale(x, self.drop_path)
        else:
            scale1 = scale2 = None
        if not self.recompute:
            return self._forward(x, scale1, scale2)
        if scale1 is None:
            return tf.recompute_grad(lambda t: self._forward(t))(x)
        return tf.recompute_grad(self._forward)(x, scale1, scale2)


class PatchMerging(Layer):
    """[B, T, H, W, C] -> [B, T, ceil(H/2), ceil(W/2), 2C]; time is never merged.

    Pads H, W at the end to even sizes and concatenates the 2x2 neighbours in the reference order
    x0=(h even, w even), x1=(h odd, w even), x2=(h even, w odd), x3=(h odd, w odd); LayerNorm(4C);
    Linear 4C -> 2C without bias.
    """

    def __init__(self, dim: int, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.norm = _layer_norm(epsilon, "norm")
        self.reduction = keras.layers.Dense(2 * dim, use_bias=False, name="reduction")

    def build(self, input_shape):
        _build_sublayer(self.norm, (None, None, None, None, 4 * self.dim))
        _build_sublayer(self.reduction, (None, 4 * self.dim))
        super().build(input_shape)

    def call(self, x):
        t, h, w = _static_dhw(x)
        c = x.shape[-1]
        x = _pad_end(x, (0, h % 2, w % 2))
        h2, w2 = (h + 1) // 2, (w + 1) // 2
        x = tf.reshape(x, [-1, t, h2, 2, w2, 2, c])
        # Channel block index = 2 * w_parity + h_parity gives the x0, x1, x2, x3 order.
        x = tf.transpose(x, [0, 1, 2, 4, 5, 3, 6])
        x = tf.reshape(x, [-1, t, h2, w2, 4 * c])
        return self.reduction(self.norm(x))


class VideoSwinStage(Layer):
    """A stack of blocks at one resolution (even blocks plain, odd blocks shifted by window//2)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size,
        drop_paths,
        mlp_ratio: float = 4.0,
        epsilon: float = 1e-5,
        recompute: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        half = tuple(w // 2 for w in window_size)
        self.blocks = [
            SwinTransformerBlock3D(
                dim,
                num_heads,
                window_size,
                (0, 0, 0) if j % 2 == 0 else half,
                mlp_ratio=mlp_ratio,
                drop_path=drop_paths[j],
                epsilon=epsilon,
                recompute=recompute,
                name=f"blocks_{j}",
            )
            for j in range(depth)
        ]

    def call(self, x, training=None):
        for block in self.blocks:
            x = block(x, training=training)
        return x
