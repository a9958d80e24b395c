"""Warm-up requests stored in an export, as TF Serving defines them.

`<export>/assets.extra/tf_serving_warmup_requests` is a TFRecord file of PredictionLog protos
(tensorflow_serving/apis/prediction_log.proto). TF Serving (and KServe's TF Serving runtime)
replays each record when it loads a version, before the version takes traffic (read in TF
Serving's servables/tensorflow/saved_model_warmup_util.cc: at most 1000 records; a record that
fails fails the load); `python -m serving` replays them once per batch size its batcher forms.
The first real requests then find the graph optimised and the kernels and buffers of those
shapes set up.

One request per predict signature of the SavedModel, batch 1: a serialized tf.Example with one mid-grey
JPEG frame for a string input (the served model's `examples`: the tft layer loops one frame to
the whole clip), zeros for any other input. Unknown non-batch dimensions (frame height and
width) become `frame_size`.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from data import example_proto
from data import features as F

REQUESTS_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000  # TF Serving refuses a file with more


def signature_defs(export_dir: str) -> dict:
    """{signature name: SignatureDef} read from saved_model.pb (no graph is loaded)."""
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    return dict(saved_model.meta_graphs[0].signature_def)


def sample_input(dtype: tf.DType, shape: list[int | None], frame_size: int) -> np.ndarray:
    """One example (batch 1) for an input of `dtype` and `shape` (None: unknown)."""
    dims = [frame_size if d is None or d < 0 else d for d in shape]
    if dims and (shape[0] is None or shape[0] < 0):
        dims[0] = 1
    if dtype != tf.string:
        return np.zeros(dims, dtype.as_numpy_dtype)
    grey = tf.io.encode_jpeg(tf.fill([frame_size, frame_size, 3], tf.constant(128, tf.uint8)))
    example = example_proto.make_example({F.FRAMES: [grey.numpy()]})
    return np.full(dims, example, dtype=object)


def write_requests(export_dir: str, frame_size: int) -> str:
    """Writes one warm-up request per predict signature of the SavedModel in `export_dir` (call it after
    tf.saved_model.save); returns the file's path."""
    path = os.path.join(export_dir, REQUESTS_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for name, signature in sorted(signature_defs(export_dir).items()):
            if signature.method_name != tf.saved_model.PREDICT_METHOD_NAME:
                continue  # __saved_model_init_op
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = name
            for key, info in signature.inputs.items():
                shape = [d.size for d in info.tensor_shape.dim]
                value = sample_input(tf.as_dtype(info.dtype), shape, frame_size)
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


def read_requests(export_dir: str) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(signature name, {input name: array}) per predict record; [] without the file."""
    path = os.path.join(export_dir, REQUESTS_FILE)
    if not tf.io.gfile.exists(path):
        return []
    requests = []
    for i, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
        if i == MAX_RECORDS:
            raise ValueError(f"{path}: more than {MAX_RECORDS} warm-up records")
        log = prediction_log_pb2.PredictionLog.FromString(record)
        if log.WhichOneof("log_type") != "predict_log":
            raise ValueError(f"{path}: record {i} is a {log.WhichOneof('log_type')}, not a predict")
        request = log.predict_log.request
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        requests.append((request.model_spec.signature_name or "serving_default", inputs))
    return requests
