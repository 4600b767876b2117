"""Affine (de)quantization of tensors, as TFLite defines it: q = round(x / scale) + zero_point,
clamped to the integer type; x = (q - zero_point) * scale. One definition for convert,
validate and the reference runs (the firmware does the same in C++: sketches/firmware)."""

from __future__ import annotations


def quantize(x, dtype, scale: float, zero_point: int):
    """Float array -> integer array of `dtype` (numpy dtype or name), saturating."""
    import numpy as np
    dt = np.dtype(dtype)
    info = np.iinfo(dt)
    q = np.round(np.asarray(x, np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dt)


def dequantize(q, scale: float, zero_point: int):
    import numpy as np
    return (np.asarray(q).astype(np.float32) - zero_point) * scale
