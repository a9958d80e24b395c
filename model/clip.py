"""From a clip of JPEG frames to the model's uint8 input, and normalisation: one definition.

The Trainer's tf.data pipeline and both serving signatures use these functions, so training,
evaluation and serving see the same pixels:

  [L] JPEG strings (the Transform's fixed temporal cover of a video)
    -> T consecutive frames: a random offset in training, the centre clip in evaluation
    -> one crop window for all frames: random resized crop in training (only that window is
       decoded, tf.io.decode_and_crop_jpeg), centre square in evaluation
    -> bilinear resize to S x S, uint8 [T, S, S, 3] until the model, which normalises it.

Multi-view evaluation (view_clips) is mmaction2's test protocol on the same L frames: `clips`
clips evenly spaced from the first to the last possible offset (SampleFrames test_mode), each in
`crops` squares of the short side (1: the centre, CenterCrop; 3: start, centre and end of the
long side, ThreeCrop). One clip and one crop is exactly the evaluation clip above.
"""

from __future__ import annotations

import tensorflow as tf

# RGB in 0..255 (mmaction / Video-Swin configs; torchvision's 0..1 constants times 255).
MEAN_RGB = (123.675, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)


def normalize(frames: tf.Tensor) -> tf.Tensor:
    """[..., 3] uint8 or float RGB in 0..255 -> float32 (frames - MEAN_RGB) / STD_RGB."""
    frames = tf.convert_to_tensor(frames)
    if frames.shape.rank is not None and frames.shape[-1] not in (None, 3):
        raise ValueError(f"normalize expects RGB frames [..., 3]; got shape {frames.shape}")
    frames = tf.cast(frames, tf.float32)
    return (frames - tf.constant(MEAN_RGB, tf.float32)) / tf.constant(STD_RGB, tf.float32)


def _uniform(seed, maxval=None, dtype=tf.float32) -> tf.Tensor:
    """A scalar in [0, maxval) (or [0, 1)): stateless when a seed [2] is given."""
    if seed is None:
        return tf.random.uniform([], 0, maxval, dtype=dtype)
    return tf.random.stateless_uniform([], seed, 0, maxval, dtype=dtype)


def clip_offset(num_frames, clip_frames: int, training: bool, seed=None) -> tf.Tensor:
    """First index of T=clip_frames consecutive frames among num_frames: random or centre."""
    slack = tf.maximum(tf.cast(num_frames, tf.int32) - clip_frames, 0)
    if training:
        return _uniform(seed, slack + 1, tf.int32)
    return slack // 2


CENTRE = 1  # crop position: 0 start, 1 centre, 2 end of the long side


def square_window(height, width, position: int = CENTRE) -> tf.Tensor:
    """[y, x, h, w] of a square of side min(height, width) at `position` along the long side:
    0 start (left or top), 1 centre, 2 end. Resizing it to S is mmaction's evaluation
    Resize(short side) + CenterCrop(S) (position 1) or one of ThreeCrop(S)'s squares."""
    side = tf.minimum(height, width)
    return tf.stack(
        [position * ((height - side) // 2), position * ((width - side) // 2), side, side]
    )


def centre_window(height, width) -> tf.Tensor:
    """[y, x, h, w] of the centred square of side min(height, width)."""
    return square_window(height, width, CENTRE)


def view_offsets(length: int, clip_frames: int, clips: int) -> list[int]:
    """First frames of `clips` clips of clip_frames among length frames, evenly spaced from the
    first to the last possible offset (mmaction2's SampleFrames in test mode, floored so that
    the middle clip of an odd count is the centre clip); one clip: the centre clip. Where fewer
    than `clips` distinct clips exist (length - clip_frames + 1), each is taken once."""
    slack = max(length - clip_frames, 0)
    if clips == 1:
        return [slack // 2]
    return sorted({i * slack // (clips - 1) for i in range(clips)})


def crop_positions(crops: int) -> list[int]:
    """1: the centre square (CenterCrop); 3: start, centre and end of the long side (ThreeCrop)."""
    if crops not in (1, 3):
        raise ValueError(f"crops must be 1 (centre) or 3 (start, centre, end), got {crops}")
    return [CENTRE] if crops == 1 else [0, CENTRE, 2]


def random_window(height, width, area_range=(0.08, 1.0), aspect_range=(3 / 4, 4 / 3), seed=None):
    """[y, x, h, w] of a random resized crop (Inception-style), one window for a whole clip."""
    sample = tf.image.sample_distorted_bounding_box
    extra = {}
    if seed is not None:
        sample, extra = tf.image.stateless_sample_distorted_bounding_box, {"seed": seed}
    begin, size, _ = sample(
        tf.stack([height, width, 3]),
        bounding_boxes=tf.zeros([1, 0, 4]),
        area_range=area_range,
        aspect_ratio_range=aspect_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
        **extra,
    )
    return tf.stack([begin[0], begin[1], size[0], size[1]])


def resize_uint8(frames: tf.Tensor, size: int) -> tf.Tensor:
    """[..., H, W, 3] -> uint8 [..., size, size, 3], bilinear, rounded."""
    resized = tf.image.resize(frames, [size, size], method="bilinear")
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)


def decode_window(jpegs: tf.Tensor, window: tf.Tensor, size: int, exact: bool) -> tf.Tensor:
    """[T] JPEG strings, one [y, x, h, w] window -> uint8 [T, size, size, 3].

    exact=False decodes only the window (tf.io.decode_and_crop_jpeg: training's random crops).
    exact=True decodes whole frames, then crops: libjpeg's chroma upsampling differs at a crop
    edge by up to ~20 levels, and evaluation must give the very pixels serving_frames gets from a
    client that decoded the frames itself.
    """
    signature = tf.TensorSpec([None, None, 3], tf.uint8)
    if not exact:
        frames = tf.map_fn(
            lambda jpeg: tf.io.decode_and_crop_jpeg(jpeg, window, channels=3),
            jpegs,
            fn_output_signature=signature,
        )
        return resize_uint8(frames, size)
    frames = tf.map_fn(
        lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3), jpegs, fn_output_signature=signature
    )
    y, x, h, w = tf.unstack(window)
    return resize_uint8(frames[:, y : y + h, x : x + w], size)


def view_clips(jpegs: tf.Tensor, clip_frames: int, size: int, views) -> tf.Tensor:
    """[L] JPEG strings of one video, views [(first frame, crop position), ...] ->
    uint8 [len(views), clip_frames, size, size, 3].

    Each frame some view needs is decoded once, whole (as jpeg_clip in evaluation, so the view
    (centre clip, centre crop) has its very pixels), then cropped and resized per view.
    """
    needed = sorted({start + i for start, _ in views for i in range(clip_frames)})
    frames = tf.map_fn(
        lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3),
        tf.gather(tf.convert_to_tensor(jpegs), needed),
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
    )
    shape = tf.shape(frames)
    clips = []
    for start, position in views:
        first = needed.index(start)  # the clip's frames follow it in `needed`
        y, x, h, w = tf.unstack(square_window(shape[1], shape[2], position))
        clip = frames[first : first + clip_frames, y : y + h, x : x + w]
        clips.append(tf.ensure_shape(resize_uint8(clip, size), [clip_frames, size, size, 3]))
    return tf.stack(clips)


def jpeg_clip(
    jpegs: tf.Tensor,
    clip_frames: int,
    size: int,
    training: bool = False,
    area_range=(0.08, 1.0),
    flip: bool = False,
    seed=None,
) -> tf.Tensor:
    """[L] JPEG strings of one video -> uint8 [clip_frames, size, size, 3].

    Evaluation (training=False): the centre clip and the centre square. Training: a random
    temporal offset, a random resized crop and, if flip, a random horizontal flip; drawn from
    `seed` (int [2]) when given, so a clip's draws do not depend on which thread makes them.
    """
    jpegs = tf.convert_to_tensor(jpegs)
    seeds = [None] * 3 if seed is None else tf.unstack(tf.random.split(seed, 3))
    start = clip_offset(tf.shape(jpegs)[0], clip_frames, training, seeds[0])
    jpegs = jpegs[start : start + clip_frames]
    shape = tf.image.extract_jpeg_shape(jpegs[0])
    if training:
        window = random_window(shape[0], shape[1], area_range, seed=seeds[1])
    else:
        window = centre_window(shape[0], shape[1])
    clip = decode_window(jpegs, window, size, exact=not training)
    if training and flip:
        flipped = _uniform(seeds[2]) < 0.5
        clip = tf.cond(flipped, lambda: tf.reverse(clip, [2]), lambda: clip)
    return tf.ensure_shape(clip, [clip_frames, size, size, 3])


def frames_clip(frames: tf.Tensor, size: int) -> tf.Tensor:
    """Decoded uint8 clips [B, T, H, W, 3] -> the evaluation crop, uint8 [B, T, size, size, 3].

    The same centre window and resize as jpeg_clip(training=False), on frames already sampled.
    """
    shape = tf.shape(frames)
    y, x, h, w = tf.unstack(centre_window(shape[2], shape[3]))
    window = tf.reshape(frames[:, :, y : y + h, x : x + w], [-1, h, w, 3])
    return tf.reshape(resize_uint8(window, size), [shape[0], shape[1], size, size, 3])
