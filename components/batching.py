"""Beam stages that read examples batch them by bytes, not by count: examples here are videos.

TFX's readers (tfx_bsl's TFXIO) let Beam batch records adaptively up to 1000 per batch; one
UCF101 example is ~1.5 MB, so one such batch would be ~1.5 GB (per Beam worker, several copies
on its way to Arrow). tfx_bsl can instead close a batch at a target byte size (~20 MiB, its
`tfxio_use_byte_size_batching` flag, off by default): read where the pipeline is built, in the
executor's process, hence set there, at the start of each executor that reads examples:
StatisticsGen and Transform here, the Evaluator in components/served_model.py.
"""

from __future__ import annotations

from absl import flags
from tfx import v1 as tfx
from tfx.components.statistics_gen import executor as statistics_gen_executor
from tfx.components.transform import executor as transform_executor
from tfx.dsl.components.base import executor_spec
from tfx_bsl.coders import batch_util

BYTE_SIZE_BATCHING_FLAG = "tfxio_use_byte_size_batching"


def use_byte_size_batching() -> None:
    """From now on in this process, TFXIO sources batch records by bytes (parsed flags or not)."""
    flags.FLAGS.set_default(BYTE_SIZE_BATCHING_FLAG, True)


def batch_bytes() -> int:
    """The byte size at which tfx_bsl closes a batch."""
    return batch_util._TARGET_BATCH_BYTES_SIZE


class ByteSizeBatching:
    """Mixin for a TFX Beam executor: its example reads batch by bytes."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 (TFX's name)
        use_byte_size_batching()
        return super().Do(input_dict, output_dict, exec_properties)


class StatisticsGenExecutor(ByteSizeBatching, statistics_gen_executor.Executor):
    pass


class TransformExecutor(ByteSizeBatching, transform_executor.Executor):
    pass


class StatisticsGen(tfx.components.StatisticsGen):
    """tfx.components.StatisticsGen, batching by bytes."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(StatisticsGenExecutor)


class Transform(tfx.components.Transform):
    """tfx.components.Transform, batching by bytes."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(TransformExecutor)
