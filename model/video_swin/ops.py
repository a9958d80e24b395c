"""Window attention, the MLP's GELU + fc2 and LayerNorm, with backwards that keep their inputs.

Autodiff keeps every intermediate that a backward op reads. For the two largest activations of a
Video Swin block that is far more than the gradient needs:
- attention keeps the softmax probabilities, [B, nW, heads, N, N] float32: 1.0 GiB of Swin-T's
  1x32x224 training step, more than every other tensor of the attention together;
- exact GELU, 0.5 x (1 + erf(x / sqrt 2)) as tf.nn.gelu computes it, keeps three tensors of the
  MLP's hidden size (x / sqrt 2, 0.5 x, 1 + erf) for its gradient, and fc2 keeps a fourth, its
  input gelu(x) (torch keeps x and gelu(x));
- LayerNorm with eps 1e-5 (Keras' fused kernel needs >= 1.001e-5) is autodiff through moments and
  batch_normalization, which keeps a second full-size tensor besides its input.
Here the backward keeps the inputs alone and recomputes the rest: the probabilities per group of
windows from q and k (as FlashAttention does; the group's logits stay in cache, so this costs
about what autodiff's broadcast sums and transposes cost), gelu(x) = x Phi(x) with GELU's
derivative from x (Phi(x) serves both), the normalised x from x and its row statistics (as
torch's LayerNorm does). Forward values are exactly those of the autodiff versions.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

_SQRT_HALF = 0.7071067811865476
_INV_SQRT_PI = 0.5641895835477563
SHIFT_MASK = -100.0  # added to the logits of token pairs from different regions (the reference's)


def layer_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: float) -> tf.Tensor:
    """LayerNorm over the last axis, the values of Keras' LayerNormalization (its unfused ops).

    x: [..., C] (float32 statistics whatever its dtype; the result has x's dtype); gamma, beta:
    [C] float32. The backward keeps x and the per-row mean and 1/std, and recomputes the
    normalised x; autodiff of Keras' ops keeps a second full-size tensor (rsqrt(var) * gamma
    broadcast to [..., C]).
    """

    @tf.custom_gradient
    def fn(x, gamma, beta):
        x32 = tf.cast(x, tf.float32)
        mean, variance = tf.nn.moments(x32, axes=[-1], keepdims=True)
        out = tf.nn.batch_normalization(x32, mean, variance, beta, gamma, epsilon)
        rstd = tf.math.rsqrt(variance + epsilon)

        def grad(dout):
            dout = tf.cast(dout, tf.float32)
            with tf.control_dependencies([dout]):  # recompute when needed: see window_attention
                normalised = (tf.cast(x, tf.float32) - mean) * rstd
            rows = list(range(x.shape.rank - 1))
            scaled = dout * gamma
            dx = rstd * (
                scaled
                - tf.reduce_mean(scaled, axis=-1, keepdims=True)
                - normalised * tf.reduce_mean(scaled * normalised, axis=-1, keepdims=True)
            )
            dgamma = tf.reduce_sum(dout * normalised, axis=rows)
            return tf.cast(dx, x.dtype), dgamma, tf.reduce_sum(dout, axis=rows)

        return tf.cast(out, x.dtype), grad

    return fn(x, gamma, beta)


def gelu_linear(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
    """gelu(x) @ kernel + bias with exact (erf) GELU, as tf.nn.gelu(x, approximate=False).

    x: [M, K] rows; kernel: [K, C]; bias: [C]. The backward keeps x, not gelu(x).
    """

    @tf.custom_gradient
    def fn(x, kernel, bias):
        out = tf.nn.bias_add(tf.matmul(tf.nn.gelu(x, approximate=False), kernel), bias)

        def grad(dout):
            # Recomputed only once the gradient arrives: see window_attention.
            with tf.control_dependencies([dout]):
                u = x * tf.cast(_SQRT_HALF, x.dtype)
            cdf = 0.5 * (1.0 + tf.math.erf(u))  # Phi(x)
            # d/dx x Phi(x) = Phi(x) + x phi(x), with x phi(x) = u exp(-u^2) / sqrt(pi).
            derivative = cdf + u * tf.cast(_INV_SQRT_PI, x.dtype) * tf.exp(-tf.square(u))
            dx = tf.matmul(dout, kernel, transpose_b=True) * derivative
            return dx, tf.matmul(x * cdf, dout, transpose_a=True), tf.reduce_sum(dout, axis=0)

        return out, grad

    return fn(x, kernel, bias)


def window_attention(
    qkv: tf.Tensor, bias: tf.Tensor, scale: float, group: int, region: np.ndarray | None = None
) -> tf.Tensor:
    """softmax(scale q k^T + bias [+ shift mask]) v in every window, `group` windows at a time.

    qkv: [B, nW, N, 3, heads, hd], the qkv Dense's rows ([q; k; v], heads inside); bias:
    [heads, N, N] float32; region: None, or [nW, N] region ids (token pairs with different ids
    get SHIFT_MASK). Returns [B, nW, N, heads, hd]. Logits, bias, mask and softmax are float32
    whatever qkv's dtype (-100 and the small bias differences are exact there).

    The backward keeps qkv and bias and recomputes each group's probabilities. Groups come from
    one tf.split of qkv: its gradient is one concat (a slice per group would have a gradient the
    size of the whole tensor per group).
    """
    num_windows = qkv.shape[1]
    starts = list(range(0, num_windows, group))
    sizes = [min(group, num_windows - s) for s in starts]

    def split(t):
        return tf.split(t, sizes, axis=1) if len(sizes) > 1 else [t]

    def shift_mask():
        """[nW, N, N] float32 (0 or SHIFT_MASK), or None. Built at run time from the ids: as a
        graph constant it would be 79 MB in Swin-T's first stage at 32x224."""
        if region is None:
            return None
        ids = tf.constant(region)
        return tf.where(tf.not_equal(ids[:, None, :], ids[:, :, None]), SHIFT_MASK, 0.0)

    def heads_first(part):
        """[B, g, N, 3, heads, hd] -> q * scale, k, v, each [B, g, heads, N, hd]."""
        q, k, v = tf.unstack(tf.transpose(part, [3, 0, 1, 4, 2, 5]))
        return q * tf.cast(scale, q.dtype), k, v

    def probabilities(q, k, bias, mask, start, size):
        """[B, g, heads, N, N] float32; bias and mask summed first: one add on the logits."""
        if mask is not None:
            bias = bias + mask[start : start + size, None]  # [g, heads, N, N]
        return tf.nn.softmax(tf.cast(tf.matmul(q, k, transpose_b=True), tf.float32) + bias)

    @tf.custom_gradient
    def attend(qkv, bias):
        parts, mask = split(qkv), shift_mask()
        outs = []
        for part, start, size in zip(parts, starts, sizes, strict=True):
            q, k, v = heads_first(part)
            p = tf.cast(probabilities(q, k, bias, mask, start, size), v.dtype)
            outs.append(tf.transpose(tf.matmul(p, v), [0, 1, 3, 2, 4]))

        def grad(dout):
            # Recompute only once the gradient arrives (control dependencies): ops whose inputs
            # are ready run at once, and would otherwise hold their results since the forward.
            with tf.control_dependencies([dout]):
                mask = shift_mask()
            dqkv, dbias = [], []
            for part, d, start, size in zip(parts, split(dout), starts, sizes, strict=True):
                with tf.control_dependencies([d]):
                    q, k, v = heads_first(part)
                    p = probabilities(q, k, bias, mask, start, size)
                d = tf.transpose(d, [0, 1, 3, 2, 4])  # [B, g, heads, N, hd]
                dv = tf.matmul(tf.cast(p, v.dtype), d, transpose_a=True)
                dp = tf.cast(tf.matmul(d, v, transpose_b=True), tf.float32)
                # Softmax's gradient (as TF's SoftmaxGrad): p (dp - sum(dp p)).
                dlogits = p * (dp - tf.reduce_sum(dp * p, axis=-1, keepdims=True))
                dbias.append(tf.reduce_sum(dlogits, axis=[0, 1]))
                dlogits = tf.cast(dlogits, q.dtype)
                dq = tf.matmul(dlogits, k) * tf.cast(scale, q.dtype)
                dk = tf.matmul(dlogits, q, transpose_a=True)
                dqkv.append(tf.transpose(tf.stack([dq, dk, dv]), [1, 2, 4, 0, 3, 5]))
            return (
                dqkv[0] if len(dqkv) == 1 else tf.concat(dqkv, axis=1),
                dbias[0] if len(dbias) == 1 else tf.add_n(dbias),
            )

        return (outs[0] if len(outs) == 1 else tf.concat(outs, axis=1)), grad

    return attend(qkv, bias)
