"""TensorFlow Lite's own interpreter behind the `tflite_micro` runtime's surface,
so `nanoml.sim.isolated.HostInterpreter(runtime=this module)` runs it in a worker
process like TFLM's (`validate --layers --reference tflite`).

LiteRT (`ai_edge_litert`) when installed, else TensorFlow's `tf.lite`; imported in
the worker only. Built without the default delegates (no XNNPACK: its fused
kernels keep no intermediate tensors) and with `experimental_preserve_all_tensors`.
"""

from __future__ import annotations

import enum

# TensorFlow's import alone maps ~1 GiB of address space in the worker.
EXTRA_MEMORY_BYTES = 4 << 30


class InterpreterConfig(enum.Enum):
    kAllocationRecording = 0
    kPreserveAllTensors = 1


def prepare() -> None:
    """Import the interpreter (before the worker fills fresh memory: TensorFlow's
    import allocates a lot)."""
    _lite()


def _lite():
    try:
        from ai_edge_litert import interpreter as lite
        return lite.Interpreter, lite.OpResolverType
    except ImportError:
        pass
    try:
        import tensorflow as tf
    except ImportError as e:
        raise ImportError(f"TensorFlow Lite's interpreter is not installed ({e})") from None
    return tf.lite.Interpreter, tf.lite.experimental.OpResolverType


def _details(d: dict) -> dict:
    return {"dtype": d["dtype"], "shape": d["shape"],
            "quantization_parameters": d.get("quantization_parameters") or {}}


class Interpreter:
    def __init__(self, data: bytes):
        cls, resolver = _lite()
        self._ip = cls(model_content=bytes(data), num_threads=1,
                       experimental_op_resolver_type=resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                       experimental_preserve_all_tensors=True)
        self._ip.allocate_tensors()
        self._in = self._ip.get_input_details()
        self._out = self._ip.get_output_details()

    @classmethod
    def from_bytes(cls, data, arena_size=None, intrepreter_config=None) -> "Interpreter":
        return cls(data)

    def get_input_details(self, i: int) -> dict:
        return _details(self._in[i])

    def get_output_details(self, i: int) -> dict:
        return _details(self._out[i])

    def set_input(self, arr, i: int) -> None:
        self._ip.set_tensor(self._in[i]["index"], arr)

    def invoke(self) -> None:
        self._ip.invoke()

    def reset(self) -> None:
        self._ip.reset_all_variables()

    def get_output(self, i: int):
        return self._ip.get_tensor(self._out[i]["index"])

    def GetTensor(self, index: int, subgraph: int) -> dict:  # noqa: N802 - TFLM's name
        return {"tensor_data": self._ip.get_tensor(index)}

    def print_allocations(self) -> None:
        pass
