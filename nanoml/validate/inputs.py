"""The samples `nanoml validate` sends: a .npy or .npz file of inputs turned
into raw tensor bytes per model input (float data quantized for integer inputs).
The file is read through `nanoml.arrays` (checked before it is read). Never prints.
"""

from __future__ import annotations

from pathlib import Path

from ..arrays import read_arrays
from ..errors import InputError

_HINT = "save the inputs with numpy.save (or numpy.savez for several inputs)"


def load_inputs(path: Path, sim_model) -> list[list[bytes]]:
    """Samples from a .npy (one input tensor: shape (N, *input) or the input
    shape itself) or .npz (one array per input, in the model's input order), as
    raw tensor bytes per input. Float data for a quantized input is quantized with
    the input's scale and zero point; integer data must match the input dtype."""
    import numpy as np
    p = Path(path)
    arrays = [a for _, a in read_arrays(p, hint=_HINT)]
    specs = sim_model.inputs
    if len(arrays) != len(specs):
        raise InputError(f"{p}: {len(arrays)} array(s) for a model with {len(specs)} input(s)",
                         "give one array per model input (.npz in input order)")
    per_input = []
    n = None
    for arr, t in zip(arrays, specs):
        shape = tuple(t.shape)
        if tuple(arr.shape) == shape:
            arr = arr[None, ...]
        elif arr.ndim == len(shape) and shape and shape[0] == 1 and tuple(arr.shape[1:]) == shape[1:]:
            arr = arr[:, None, ...].reshape((arr.shape[0],) + shape)   # (N, ...) batch of samples
        elif tuple(arr.shape[1:]) == shape:
            pass
        elif arr.ndim >= 1 and int(np.prod(arr.shape[1:])) == int(np.prod(shape)):
            arr = arr.reshape((arr.shape[0],) + shape)
        else:
            raise InputError(f"{p}: array of shape {tuple(arr.shape)} does not fit the input "
                             f"{t.dtype}{list(shape)}", "shape it (N, *input_shape)")
        per_input.append(_to_dtype(arr, t, p))
        n = arr.shape[0] if n is None else min(n, arr.shape[0])
    if not n:
        raise InputError(f"{p}: no samples", "the file holds an empty array")
    return [[per_input[j][i].tobytes() for j in range(len(specs))] for i in range(n)]


def _to_dtype(arr, t, p):
    import numpy as np
    dt = np.dtype(t.dtype)
    if arr.dtype == dt:
        return np.ascontiguousarray(arr).astype(dt.newbyteorder("<"))
    if arr.dtype.kind == "f" and dt.kind in "iu":
        if not t.quantized:
            raise InputError(f"{p}: float data for a non-quantized {t.dtype} input")
        if not np.isfinite(arr).all():
            raise InputError(f"{p}: NaN or infinite values for the quantized {t.dtype} input",
                             "quantization needs finite numbers: clean the data")
        from ..model.quant import quantize
        return quantize(arr, dt, t.scale, t.zero_point).astype(dt.newbyteorder("<"))
    if dt.kind == "f":
        return arr.astype(dt.newbyteorder("<"))
    raise InputError(f"{p}: {arr.dtype} data for a {t.dtype} input",
                     f"save the inputs as float32 (nanoml quantizes them) or as {t.dtype}")
