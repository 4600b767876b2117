"""The one (de)quantization definition used by convert, validate and the reference runs."""

import numpy as np

from nanoml.model.quant import dequantize, quantize


def test_quantize_rounds_offsets_and_saturates():
    x = np.array([-2.0, -0.26, 0.0, 0.24, 0.26, 10.0])
    q = quantize(x, "int8", 0.5, -3)
    assert q.dtype == np.int8
    assert q.tolist() == [-7, -4, -3, -3, -2, 17]
    assert quantize(np.array([1e9, -1e9]), "int8", 0.1, 0).tolist() == [127, -128]
    assert quantize(np.array([1e9, -1e9]), np.int16, 0.1, 0).tolist() == [32767, -32768]


def test_dequantize_inverts_within_half_a_step():
    x = np.linspace(-3, 3, 101)
    y = dequantize(quantize(x, "int8", 0.05, 4), 0.05, 4)
    assert y.dtype == np.float32
    assert np.max(np.abs(y - x)) <= 0.025 + 1e-6
