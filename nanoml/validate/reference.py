"""The reference of `nanoml validate --layers`: every operator's output tensor
for one input, from a host interpreter that keeps all tensors.

    ref = LayerReference(model, "tflm")         # or "tflite"; a worker process
    layers = ref.run(inputs)                     # [LayerTensor], one per operator output
    ref.close()

`"tflm"`: TFLM's Python interpreter (the `tflite-micro` package) with
`kPreserveAllTensors` (no arena reuse, so every intermediate tensor is still
there after `invoke()`); the same reference kernels the virtual board runs.
`"tflite"`: TensorFlow Lite's own interpreter (LiteRT `ai-edge-litert`, else
TensorFlow's `tf.lite`) with `experimental_preserve_all_tensors`, to tell a TFLM
difference from a board difference. Both run in a worker process
(nanoml.sim.isolated). Operators and their output tensors come from the model
(nanoml.model.tflite). Never prints.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ToolError, UsageError
from ..model import tflite

REFERENCES = ("tflm", "tflite")
TFLITE_HINT = "pip install ai-edge-litert (or nanoml's [convert] extra: TensorFlow)"


@dataclass
class LayerTensor:
    """One operator's output tensor (the reference's or the board's)."""
    op: int                          # operator index in subgraph 0 (execution order)
    tensor: int                      # the model's tensor index
    dtype: str
    shape: tuple[int, ...]
    scale: float | None              # per-tensor quantization, None when not quantized
    zero_point: int | None
    data: object                     # numpy array of `dtype`, `shape`
    determined: object = None        # reference only: bool array, False where the op never
    #                                  wrote the element (None: every element written)

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.dtype in ("int8", "uint8", "int16")


@dataclass(frozen=True)
class Layer:
    """An operator of subgraph 0 and its output tensors, from the model."""
    index: int
    op: str
    version: int
    inputs: tuple[int, ...]          # tensor indices (absent optional inputs left out)
    outputs: tuple[int, ...]


def model_layers(model: tflite.Model) -> list[Layer]:
    """Subgraph 0's operators in execution order with their output tensors.
    Raises UsageError naming the first operator whose output has no values a
    layer dump can carry (resource, variant, string: nanoml.serial.layers), or
    that has no output at all."""
    from ..serial.layers import unreadable_outputs
    main = model.main
    for index, name, t, _ in unreadable_outputs(model)[:1]:
        raise UsageError(
            f"operator {index} ({name}) outputs a {main.tensors[t].dtype} tensor (tensor {t}): "
            "it holds no values, so its output cannot be read layer by layer",
            "validate the final outputs instead: leave out --layers")
    out = []
    for op in main.operators:
        outs = tuple(t for t in op.outputs if t >= 0)
        if not outs:
            raise UsageError(f"operator {op.index} ({op.display_name}) has no output tensor "
                             "to read layer by layer",
                             "validate the final outputs instead: leave out --layers")
        out.append(Layer(op.index, op.display_name, op.version,
                         tuple(t for t in op.inputs if t >= 0), outs))
    return out


def tensor_quant(t: tflite.Tensor) -> tuple[float | None, int | None]:
    """(scale, zero point) of a per-tensor quantized tensor, else (None, None)."""
    q = t.quant
    if q is None or len(q.scale) != 1:
        return None, None
    return float(q.scale[0]), int(q.zero_point[0])


def _arena(model: tflite.Model) -> int:
    """Arena for the preserving interpreter: the usual one plus every activation
    tensor (nothing is reused when all tensors are kept)."""
    from ..sim.isolated import MAX_ARENA_BYTES
    from ..sim.model import default_arena
    acts = sum(t.arena_bytes + 16 for t in model.main.tensors if not t.is_const)
    return min(MAX_ARENA_BYTES, default_arena(model.size) + 2 * acts)


def _tflite_runtime():
    """The --reference tflite interpreter module, checked before any worker starts."""
    import importlib.util
    for name in ("ai_edge_litert", "tensorflow"):     # top-level names: find_spec imports nothing
        if importlib.util.find_spec(name) is not None:
            from . import tflite_runtime
            return tflite_runtime
    raise ToolError("--reference tflite needs TensorFlow Lite's interpreter, and neither "
                    "ai-edge-litert nor TensorFlow is installed", TFLITE_HINT)


def _first(message: str) -> str:
    """The interpreter's own words from a HostInterpreterError message: its first
    two sentences (TensorFlow Lite repeats one per tensor)."""
    import re
    inner = message.split("(", 1)[-1].rsplit(")", 1)[0].split(";")[0]
    return " ".join(re.split(r"(?<=\.)(?=[A-Za-z])", inner)[:2]).strip()[:200]


# The two bytes the reference workers fill fresh memory with (glibc M_PERTURB):
# an element an operator never writes keeps the fill, so the two runs differ there.
FILLS = (0x55, 0xAA)


def _fill_memory(byte: int) -> bool:
    """In a worker, before the interpreter exists: glibc fills memory malloc hands
    out with ~byte (and keeps large blocks off mmap, which it would not fill). False
    where that is not possible (not glibc): then nothing is marked undetermined."""
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(-3, 1 << 30)) and bool(libc.mallopt(-6, byte))
    except (OSError, AttributeError):
        return False


class _Twins:
    """A runtime module for HostInterpreter: each "interpreter" is two of `base`'s
    (`tflite_micro`'s runtime, or nanoml.validate.tflite_runtime) created in the
    worker with fresh memory filled with FILLS[0] and FILLS[1]. Both get the same
    inputs and run; outputs are the first's; GetTensor stacks both tensors."""

    def __init__(self, base):
        self.base = base
        self.InterpreterConfig = base.InterpreterConfig
        self.EXTRA_MEMORY_BYTES = getattr(base, "EXTRA_MEMORY_BYTES", 0)
        self.Interpreter = self

    def from_bytes(self, data, **kw) -> "_TwinInterpreter":
        getattr(self.base, "prepare", lambda: None)()      # heavy imports before the fill
        ips = []
        for fill in FILLS:
            _fill_memory(fill)
            ips.append(self.base.Interpreter.from_bytes(data, **kw))
        _fill_memory(0)                                    # 0: glibc fills no more
        return _TwinInterpreter(ips)


class _TwinInterpreter:
    def __init__(self, ips):
        self.ips = ips

    def get_input_details(self, i):
        return self.ips[0].get_input_details(i)

    def get_output_details(self, i):
        return self.ips[0].get_output_details(i)

    def set_input(self, arr, i):
        for ip in self.ips:
            ip.set_input(arr, i)

    def invoke(self):
        for ip in self.ips:
            ip.invoke()

    def reset(self):
        for ip in self.ips:
            ip.reset()

    def get_output(self, i):
        return self.ips[0].get_output(i)

    def GetTensor(self, index, subgraph):  # noqa: N802 - TFLM's name
        import numpy as np
        return {"tensor_data": np.stack([np.asarray(ip.GetTensor(index, subgraph)["tensor_data"])
                                         for ip in self.ips])}

    def print_allocations(self):
        self.ips[0].print_allocations()


class LayerReference:
    """One model in two preserving host interpreters (in one worker process) whose
    fresh memory is filled differently: what they agree on is the reference; an
    element they disagree on was never written by its operator (uninitialised
    memory, e.g. SignalEnergy's bins outside its band) and is not compared."""

    def __init__(self, model: tflite.Model, reference: str = "tflm", deadline=None):
        from ..sim.isolated import HostInterpreter, HostInterpreterError
        if reference not in REFERENCES:
            raise UsageError(f"--reference must be one of {', '.join(REFERENCES)}, got "
                             f"{reference!r}")
        self.model = model
        self.reference = reference
        self.layers = model_layers(model)
        if reference == "tflite":
            runtime = _tflite_runtime()
        else:
            from tflite_micro.python.tflite_micro import runtime
        main = model.main
        self._ip = None
        try:
            self._ip = HostInterpreter(bytes(model.raw), _arena(model), len(main.inputs),
                                       len(main.outputs), deadline=deadline, preserve=True,
                                       runtime=_Twins(runtime))
        except HostInterpreterError as e:
            if reference == "tflite":
                if "not installed" in e.message:
                    raise ToolError("--reference tflite needs TensorFlow Lite's interpreter, "
                                    "which does not import here", TFLITE_HINT) from None
                raise HostInterpreterError(f"{model.path}: TensorFlow Lite's interpreter "
                                           f"cannot run this model ({_first(e.message)})",
                                           "compare with TFLM instead: --reference tflm",
                                           e.status, e.step) from None
            raise HostInterpreterError(f"{model.path}: {e.message}", e.hint, e.status,
                                       e.step) from None
        self.input_specs = [(str(main.tensors[t].dtype), tuple(main.tensors[t].shape))
                            for t in main.inputs]

    def run(self, inputs: list[bytes]) -> tuple[list[LayerTensor], list]:
        """(every operator output, the model's output arrays) for one input
        (raw tensor bytes per model input)."""
        import numpy as np
        arrays = self.input_arrays(inputs)
        wanted = [(layer.index, t) for layer in self.layers for t in layer.outputs]
        self._ip.reset()          # the board resets before every dumped inference too
        outs, _ = self._ip.run(arrays)
        got = self._ip.tensors([t for _, t in wanted])      # each: both twins, stacked
        res = [self._tensor(op, t, np.asarray(pair[0]), np.asarray(pair[1]))
               for (op, t), pair in zip(wanted, got)]
        return res, [np.asarray(o) for o in outs]

    def input_arrays(self, inputs: list[bytes]) -> list:
        """Raw tensor bytes per model input as arrays of the model's dtype and shape."""
        import numpy as np
        return [np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
                .reshape(shape) for (dtype, shape), data in zip(self.input_specs, inputs)]

    def alone(self, layer: Layer) -> tuple[list[int], str | None]:
        """(the tensors `layer` reads that are not constants, why it cannot run alone
        or None)."""
        from ..model import extract
        op = self.model.main.operators[layer.index]
        return extract.variable_inputs(self.model, op), extract.alone_refusal(self.model, op)

    def run_alone(self, layer: Layer, arrays: list) -> list[LayerTensor]:
        """`layer` alone (a single-operator model, in the same worker) on `arrays`
        (one per alone()[0] tensor): its output tensors, with the undetermined mask."""
        import numpy as np
        from ..model import extract
        from ..sim.model import default_arena
        op = self.model.main.operators[layer.index]
        cache = self.__dict__.setdefault("_single", {})
        if layer.index not in cache:
            data = extract.single_op_model(self.model, op)
            tensors = self.model.main.tensors
            acts = sum(tensors[t].arena_bytes + 16 for t in layer.inputs + layer.outputs)
            cache[layer.index] = (data, min(_arena(self.model), default_arena(len(data))
                                            + 2 * acts))
        data, arena = cache[layer.index]
        wanted = [extract.tensor_order(op).index(t) for t in layer.outputs]
        got = self._ip.run_alone(layer.index, data, arena, arrays, wanted)
        res = []
        for t, pair in zip(layer.outputs, got):
            res.append(self._tensor(layer.index, t, np.asarray(pair[0]), np.asarray(pair[1])))
        return res

    def _tensor(self, op: int, t: int, a, b) -> LayerTensor:
        import numpy as np
        scale, zp = tensor_quant(self.model.main.tensors[t])
        same = (a == b) | (np.isnan(a) & np.isnan(b)) if a.dtype.kind == "f" else a == b
        return LayerTensor(op, t, a.dtype.name, tuple(int(x) for x in a.shape), scale, zp, a,
                           None if same.all() else same)

    def close(self) -> None:
        if self._ip is not None:
            self._ip.close()

    def __enter__(self) -> "LayerReference":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
