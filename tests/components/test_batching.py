"""Beam stages batch examples by bytes, not by count: a batch closes at a byte budget."""

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.coders import batch_util
from tfx_bsl.public import tfxio

from components import batching
from data import features as F
from pipeline import configs
from pipeline.pipeline import create_pipeline

FRAME_BYTES = 50_000


@pytest.fixture(scope="module")
def big_examples(tmp_path_factory):
    """40 examples of 4 random 'frames' (~200 kB each), GZIP TFRecords."""
    path = str(tmp_path_factory.mktemp("big") / "examples.gz")
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(40):
            example = tf.train.Example()
            example.features.feature[F.FRAMES].bytes_list.value.extend(
                rng.bytes(FRAME_BYTES) for _ in range(4)
            )
            example.features.feature[F.LABEL].int64_list.value.append(i % 3)
            writer.write(example.SerializeToString())
    return path


def _batch_sizes(pattern: str, output) -> list[int]:
    """Examples per RecordBatch as TFX's stages read them (TFXIO, batch size left to tfx_bsl)."""
    schema = schema_pb2.Schema()
    schema.feature.add(name=F.FRAMES, type=schema_pb2.BYTES)
    schema.feature.add(name=F.LABEL, type=schema_pb2.INT)
    source = tfxio.TFExampleRecord(pattern, schema=schema, telemetry_descriptors=["test"])
    with beam.Pipeline(argv=["--direct_running_mode=in_memory"]) as pipeline:
        _ = (
            pipeline
            | source.BeamSource()
            | beam.Map(lambda batch: batch.num_rows)
            | beam.io.WriteToText(str(output), shard_name_template="")
        )
    sizes = [int(line) for line in output.read_text().split()]
    assert sum(sizes) == 40
    return sizes


@pytest.fixture
def batching_flag():
    """Restores tfx_bsl's flag default after the test (it is process-wide)."""
    default = flags.FLAGS[batching.BYTE_SIZE_BATCHING_FLAG].default
    yield
    flags.FLAGS.set_default(batching.BYTE_SIZE_BATCHING_FLAG, default)


def test_a_byte_budget_smaller_than_one_example_gives_batches_of_one(
    big_examples, batching_flag, monkeypatch, tmp_path
):
    monkeypatch.setattr(batch_util, "_TARGET_BATCH_BYTES_SIZE", FRAME_BYTES)
    flags.FLAGS.set_default(batching.BYTE_SIZE_BATCHING_FLAG, False)
    by_count = _batch_sizes(big_examples, tmp_path / "by_count.txt")
    assert max(by_count) > 1  # Beam grows batches of a count: 1, 2, 4, ...
    batching.use_byte_size_batching()
    # Every batch holds one example (Beam may also emit an empty one when the first example
    # alone is over the budget).
    assert max(_batch_sizes(big_examples, tmp_path / "by_bytes.txt")) == 1


def test_the_default_budget_bounds_a_batch_in_bytes(big_examples, batching_flag, tmp_path):
    batching.use_byte_size_batching()
    per_example = 4 * FRAME_BYTES
    limit = batching.batch_bytes() // per_example + 1  # a batch closes once over the budget
    assert 1 < max(_batch_sizes(big_examples, tmp_path / "sizes.txt")) <= limit


def test_every_stage_that_reads_examples_batches_by_bytes():
    pipeline = create_pipeline(
        "p", "/tmp/root", "/data", "/serving", schema_path=configs.SYNTHETIC_SCHEMA
    )
    readers = {"StatisticsGen", "Transform", "Evaluator"}
    for component in pipeline.components:
        if component.id in readers:
            executor = component.executor_spec.executor_class
            assert issubclass(executor, batching.ByteSizeBatching), component.id
            readers.remove(component.id)
    assert not readers
