"""The inferred schema keeps `frames` variable-length; everything else stays TFDV's."""

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from components.video_schema_gen import with_variable_length_frames

# What SchemaGen(infer_feature_shape=True) infers when every video has 16 frames.
INFERRED = """
feature { name: "frames" type: BYTES shape { dim { size: 16 } } presence { min_fraction: 1.0 } }
feature { name: "label" type: INT shape { dim { size: 1 } } presence { min_fraction: 1.0 } }
"""


def test_frames_lose_the_inferred_fixed_length_and_nothing_else_changes():
    schema = with_variable_length_frames(text_format.Parse(INFERRED, schema_pb2.Schema()))
    frames, label = schema.feature
    assert not frames.HasField("shape") and frames.value_count.min == 1
    assert frames.presence.min_fraction == 1.0
    assert list(label.shape.dim) == [schema_pb2.FixedShape.Dim(size=1)]
