"""Concurrent requests of one signature merged into one model call (TF Serving's batching idea).

No request waits for a batch to fill: a batching thread takes the oldest waiting request and
whatever compatible requests are already queued (same version, signature, input dtypes and
non-batch shapes), up to `max_batch` examples. Under load, requests queue while the model runs,
so batches form by themselves; when idle, a request runs alone at once.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import queue
import threading

import numpy as np
import tensorflow as tf

from serving.repository import Signature, call_signature

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Item:
    signature: Signature
    inputs: dict[str, np.ndarray]
    size: int
    key: tuple
    future: concurrent.futures.Future


class Batcher:
    def __init__(self, max_batch: int, threads: int = 2, start: bool = True):
        self.max_batch = max_batch
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._run, name=f"batcher-{i}", daemon=True)
            for i in range(threads)
        ]
        if start:
            self.start()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def queued(self) -> int:
        return self._queue.qsize()

    def __call__(
        self, signature: Signature, inputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Blocks until this request's outputs are ready; raises what the model raised."""
        sizes = {len(v) if v.ndim else -1 for v in inputs.values()}
        if (
            len(sizes) != 1
            or -1 in sizes
            or not all(_batched(s) for s in signature.outputs.values())
        ):
            return call_signature(signature, inputs)  # nothing to split along: run it alone
        key = (
            id(signature.function),
            *((k, v.dtype.str, v.shape[1:]) for k, v in sorted(inputs.items())),
        )
        item = _Item(signature, inputs, sizes.pop(), key, concurrent.futures.Future())
        self._queue.put(item)
        return item.future.result()

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch, size, others = [first], first.size, []
            while size < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    others.append(item)
                elif item.key == first.key and size + item.size <= self.max_batch:
                    batch.append(item)
                    size += item.size
                else:
                    others.append(item)
            for item in others:  # another thread (or the next round) takes them
                self._queue.put(item)
            self._execute(batch)

    def _execute(self, batch: list[_Item]) -> None:
        try:
            if len(batch) == 1:
                batch[0].future.set_result(call_signature(batch[0].signature, batch[0].inputs))
                return
            names = list(batch[0].inputs)
            merged = {n: np.concatenate([item.inputs[n] for item in batch]) for n in names}
            outputs = call_signature(batch[0].signature, merged)
            if any(len(v) != sum(item.size for item in batch) for v in outputs.values()):
                raise ValueError(f"outputs {sorted(outputs)} do not follow the batch size")
            start = 0
            for item in batch:
                end = start + item.size
                item.future.set_result({k: v[start:end] for k, v in outputs.items()})
                start = end
        except tf.errors.InvalidArgumentError as error:
            if len(batch) == 1:
                batch[0].future.set_exception(error)
            else:  # one bad request must not fail the others: run them one by one
                for item in batch:
                    self._execute([item])
        except Exception as error:
            log.exception("batched model call failed")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)


def _batched(spec: tf.TensorSpec) -> bool:
    return spec.shape.rank is not None and spec.shape.rank >= 1 and spec.shape[0] is None
