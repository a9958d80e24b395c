"""What StatisticsGen computes.

Statistics of JPEG strings tell little: what matters is that every video has frames and how
many (presence and value counts of `frames`, `num_frames`), the label distribution and the
videos' metadata (fps, time step, size). By default TFDV also treats `frames` as a categorical
string feature: it counts every distinct JPEG (top-k and unique values, hashing each ~17 kB
frame) and its string lengths. Declared as image bytes (`image_domain`), `frames` keeps its
common statistics, so every check the schemas make (presence, frame-count bounds) still runs,
and gets byte-size statistics instead of the categorical ones.
"""

from __future__ import annotations

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2

from data import features as F


def stats_options() -> tfdv.StatsOptions:
    """StatisticsGen's options: `frames` as image bytes (no top-k / unique counting)."""
    schema = schema_pb2.Schema()
    frames = schema.feature.add(name=F.FRAMES, type=schema_pb2.BYTES)
    frames.image_domain.SetInParent()
    return tfdv.StatsOptions(schema=schema)
