"""TensorFlow 2.16's functions fail to finalize at interpreter exit; later TensorFlow does not.

A process that still holds TensorFlow functions when Python exits (each Beam worker of the
Evaluator: TFMA keeps the model in Beam's Shared cache for the worker's lifetime; the Transform's
workers, its analysis graphs) destroys them after interpreter teardown has cleared module
globals. TF 2.16's
`AtomicFunction.__del__` then looks up its module's RUNTIME_FUNCTION_REFS, finds None, and
Python prints "Exception ignored in: <function AtomicFunction.__del__ ...> TypeError: 'NoneType'
object is not subscriptable" on a successful run. TensorFlow's own fix (its master's
atomic_function.py) returns early when RUNTIME_FUNCTION_REFS is None; importing this module
applies that same guard to TF 2.16. Nothing is skipped while the interpreter runs: only at
teardown, when the process's functions are gone with it anyway.

Beam workers import it through `--beam_plugins=model.function_teardown` (pipeline/pipeline.py
gives that to the Transform and the Evaluator, the Beam steps whose workers run TensorFlow).
"""

from __future__ import annotations

from tensorflow.python.eager.polymorphic_function import atomic_function

MODULE = __name__  # what --beam_plugins names


def _guarded(delete):
    # Teardown has cleared module globals: use only what the defaults captured.
    def __del__(self, _delete=delete, _module=atomic_function):  # noqa: N807 (a finalizer)
        if _module.RUNTIME_FUNCTION_REFS is None:
            return
        _delete(self)

    __del__.guarded = True
    return __del__


if not getattr(atomic_function.AtomicFunction.__del__, "guarded", False):
    atomic_function.AtomicFunction.__del__ = _guarded(atomic_function.AtomicFunction.__del__)
