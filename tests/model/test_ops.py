"""The hand-written gradients (model/video_swin/ops.py) equal autodiff's, and keep less."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from model.video_swin import SwinTransformerBlock3D, ops
from model.video_swin import windows as win
from model.video_swin.layers import LayerNorm


def _autodiff_attention(qkv, bias, scale, region):
    """The plain formulation: every window at once, the mask added, autodiff's gradient."""
    q, k, v = tf.unstack(tf.transpose(qkv, [3, 0, 1, 4, 2, 5]))
    logits = tf.cast(tf.matmul(q * tf.cast(scale, q.dtype), k, transpose_b=True), tf.float32)
    logits += bias
    if region is not None:
        mask = np.where(region[:, None, :] != region[:, :, None], ops.SHIFT_MASK, 0.0)
        logits += tf.constant(mask[:, None], tf.float32)
    out = tf.matmul(tf.cast(tf.nn.softmax(logits), v.dtype), v)
    return tf.transpose(out, [0, 1, 3, 2, 4])


def _value_and_grads(fn, inputs, dout):
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        out = fn(*inputs)
        loss = tf.reduce_sum(tf.cast(out, tf.float32) * dout)
    return [out, *tape.gradient(loss, inputs)]


@pytest.mark.parametrize(("dtype", "atol"), [(tf.float32, 2e-6), (tf.bfloat16, 0.02)])
@pytest.mark.parametrize(
    ("windows", "group", "masked"),
    [(5, 2, True), (4, 4, False), (3, 1, True), (6, 4, False)],  # uneven last groups too
)
def test_window_attention_equals_autodiff(dtype, atol, windows, group, masked):
    rng = np.random.default_rng(windows)
    batch, tokens, heads, head_dim = 2, 12, 3, 4
    qkv = tf.cast(rng.standard_normal((batch, windows, tokens, 3, heads, head_dim)), dtype)
    bias = tf.constant(rng.standard_normal((heads, tokens, tokens)), tf.float32)
    region = rng.integers(0, 3, (windows, tokens)).astype(np.int32) if masked else None
    dout = tf.constant(rng.standard_normal((batch, windows, tokens, heads, head_dim)), tf.float32)
    scale = head_dim**-0.5
    ours = _value_and_grads(
        lambda a, b: ops.window_attention(a, b, scale, group, region), [qkv, bias], dout
    )
    reference = _value_and_grads(
        lambda a, b: _autodiff_attention(a, b, scale, region), [qkv, bias], dout
    )
    for name, a, b in zip(("output", "d qkv", "d bias"), ours, reference, strict=True):
        assert a.dtype == b.dtype, name
        a, b = tf.cast(a, tf.float32).numpy(), tf.cast(b, tf.float32).numpy()
        np.testing.assert_allclose(a, b, atol=atol * np.abs(b).max(), rtol=0, err_msg=name)


@pytest.mark.parametrize(("dtype", "atol"), [(tf.float32, 1e-6), (tf.bfloat16, 0.02)])
def test_gelu_linear_equals_autodiff(dtype, atol):
    rng = np.random.default_rng(0)
    x = tf.cast(rng.uniform(-6.0, 6.0, (50, 8)), dtype)
    kernel = tf.cast(rng.standard_normal((8, 5)), dtype)
    bias = tf.cast(rng.standard_normal(5), dtype)
    dout = tf.constant(rng.standard_normal((50, 5)), tf.float32)
    ours = _value_and_grads(ops.gelu_linear, [x, kernel, bias], dout)
    reference = _value_and_grads(
        lambda x, w, b: tf.nn.bias_add(tf.matmul(tf.nn.gelu(x, approximate=False), w), b),
        [x, kernel, bias],
        dout,
    )
    np.testing.assert_array_equal(ours[0].numpy(), reference[0].numpy())  # the same forward ops
    for name, a, b in zip(("d x", "d kernel", "d bias"), ours[1:], reference[1:], strict=True):
        assert a.dtype == b.dtype == dtype, name
        a, b = tf.cast(a, tf.float32).numpy(), tf.cast(b, tf.float32).numpy()
        np.testing.assert_allclose(a, b, atol=atol * np.abs(b).max(), rtol=0, err_msg=name)


@pytest.mark.parametrize(("policy", "atol"), [("float32", 1e-6), ("mixed_bfloat16", 0.02)])
def test_layer_norm_equals_keras_and_its_autodiff_gradient(policy, atol):
    rng = np.random.default_rng(1)
    keras.mixed_precision.set_global_policy(policy)
    try:
        ours = LayerNorm(epsilon=1e-5)
        reference = keras.layers.LayerNormalization(epsilon=1e-5)
        x = tf.cast(rng.standard_normal((2, 3, 5, 24)) * 3 + 1, ours.compute_dtype)
        ours.build(x.shape)
        reference.build(x.shape)
        weights = [rng.standard_normal(24), rng.standard_normal(24)]  # gamma, beta
        for layer in (ours, reference):
            layer.set_weights(weights)
        dout = tf.constant(rng.standard_normal((2, 3, 5, 24)), tf.float32)
        results = []
        for layer in (ours, reference):
            inputs = [x, *layer.trainable_variables]
            results.append(_value_and_grads(lambda x, *_, layer=layer: layer(x), inputs, dout))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    (out, *grads), (ref_out, *ref_grads) = results
    assert out.dtype == ref_out.dtype == x.dtype
    np.testing.assert_array_equal(out.numpy(), ref_out.numpy())  # the same forward ops
    for name, a, b in zip(("d x", "d gamma", "d beta"), grads, ref_grads, strict=True):
        assert a.dtype == b.dtype, name
        a, b = tf.cast(a, tf.float32).numpy(), tf.cast(b, tf.float32).numpy()
        np.testing.assert_allclose(a, b, atol=atol * np.abs(b).max(), rtol=0, err_msg=name)


def _ancestors(tensors) -> set[str]:
    seen, stack = set(), [t.op for t in tensors]
    while stack:
        op = stack.pop()
        if op.name not in seen:
            seen.add(op.name)
            stack += [t.op for t in op.inputs] + list(op.control_inputs)
    return seen


@pytest.mark.parametrize("shift", [(0, 0, 0), (1, 2, 2)])
def test_block_backward_keeps_neither_probabilities_nor_gelu_intermediates(shift):
    """In a block's training graph: no forward Softmax/Erf output is read by the backward, of the
    MLP's hidden-size tensors only fc1's output is, and the backward's recomputed Softmax/Erf
    wait for the incoming gradient, which needs the block's output (so the executor cannot run
    them during the forward and hold their results until the backward)."""
    block = SwinTransformerBlock3D(16, 2, (2, 4, 4), shift, name="block")
    x = tf.random.stateless_normal([2, 4, 8, 8, 16], seed=(1, 2))

    @tf.function(autograph=False)
    def grads(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = block(x, training=True)
            loss = tf.reduce_sum(tf.square(y))
        return [y, loss, *tape.gradient(loss, [x, *block.trainable_variables])]

    graph = grads.get_concrete_function(x).graph
    forward = _ancestors(graph.outputs[:2])
    backward = _ancestors(graph.outputs[2:]) - forward
    block_output = graph.outputs[0].op.inputs[0].op.name  # behind the function's Identity
    ops_by_name = {op.name: op for op in graph.get_operations()}
    for op_type in ("Softmax", "Erf"):
        ran_forward = [op for op in graph.get_operations() if op.name in forward]
        ran_forward = [op for op in ran_forward if op.type == op_type]
        assert ran_forward, op_type
        for op in ran_forward:
            readers = {c.name for c in op.outputs[0].consumers()} & backward
            assert not readers, (op.name, readers)
        recomputed = [ops_by_name[n] for n in backward if ops_by_name[n].type == op_type]
        assert recomputed, op_type
        for op in recomputed:
            assert block_output in _ancestors(op.outputs), op.name
    hidden_read_by_backward = {
        op.name
        for op in graph.get_operations()
        if op.name in forward
        and op.type != "ReadVariableOp"  # fc1's kernel
        and any(t.shape.rank and t.shape[-1] == 64 for t in op.outputs)  # 4 x 16 channels
        and any(c.name in backward for t in op.outputs for c in t.consumers())
    }
    assert hidden_read_by_backward == {"block/mlp/fc1/BiasAdd"}, hidden_read_by_backward


def test_block_gradients_under_xla_equal_the_graph_ones():
    block = SwinTransformerBlock3D(16, 2, (2, 4, 4), (1, 2, 2), name="block")
    x = tf.random.stateless_normal([2, 4, 8, 8, 16], seed=(5, 6))

    def grads(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(block(x, training=False)))
        return tape.gradient(loss, [x, *block.trainable_variables])

    graph = tf.function(grads, autograph=False)(x)
    xla = tf.function(grads, autograph=False, jit_compile=True)(x)
    for a, b in zip(xla, graph, strict=True):
        a, b = tf.convert_to_tensor(a).numpy(), tf.convert_to_tensor(b).numpy()
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max(), rtol=0)


def test_mixed_precision_block_gradients_are_finite():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        block = SwinTransformerBlock3D(16, 2, (2, 4, 4), (1, 2, 2), name="block")
        x = tf.cast(tf.random.stateless_normal([2, 4, 8, 8, 16], seed=(3, 4)), tf.bfloat16)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.cast(block(x, training=True), tf.float32) ** 2)
        variables = block.trainable_variables
        names = ["x", *(v.name for v in variables)]
        grads = dict(zip(names, tape.gradient(loss, [x, *variables]), strict=True))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert grads["x"].dtype == tf.bfloat16
    table = block.attn.relative_position_bias_table
    assert tf.convert_to_tensor(grads[table.name]).dtype == tf.float32  # bias stays float32
    for name, g in grads.items():
        assert np.isfinite(tf.cast(tf.convert_to_tensor(g), tf.float32).numpy()).all(), name


def test_shift_mask_in_window_attention_is_the_reference_mask():
    """ops.window_attention masks with region ids; the ids give the reference's mask."""
    padded, window, shift = (4, 8, 8), (2, 4, 4), (1, 2, 2)
    region = win.shifted_window_regions(padded, window, shift)
    mask = np.where(region[:, None, :] != region[:, :, None], ops.SHIFT_MASK, 0.0)
    np.testing.assert_array_equal(mask, win.shifted_window_mask(padded, window, shift))
