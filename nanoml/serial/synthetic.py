"""The deterministic synthetic input pattern (`--input synthetic`), the Python
twin of `nanoml::synthetic_fill` in sketches/common/nanoml_protocol.h.

A 32-bit LCG, s = s * 1664525 + 1013904223 (mod 2^32), starting at s = seed,
stepped once per element; the element comes from the new state:

    int8   (int8)(s >> 24)        uint8 (uint8)(s >> 24)      int16 (int16)(s >> 16)
    float32 ((s >> 8) & 0xFFFF) / 32768 - 1          (exact in float32, in [-1, 1))
    other  one byte (s >> 24) per byte

Inference number `seq` uses seed = seq * 2654435761 (mod 2^32) for input 0; input k+1 is seeded with
the final state of input k. Bytes are little-endian, as on the device.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .protocol import DTYPE_CODES, LCG_ADD, LCG_MUL, SEED_MUL

_ELEMENT_BYTES = {DTYPE_CODES["int8"]: 1, DTYPE_CODES["uint8"]: 1,
                  DTYPE_CODES["int16"]: 2, DTYPE_CODES["float32"]: 4}


@lru_cache(maxsize=16)
def _jump_table(count: int) -> tuple[np.ndarray, np.ndarray]:
    """A_k, C_k with s_k = A_k * seed + C_k (mod 2^32) for k = 1..count."""
    a = np.empty(count, dtype=np.uint64)
    c = np.empty(count, dtype=np.uint64)
    ak, ck = 1, 0
    for k in range(count):
        ak = (ak * LCG_MUL) & 0xFFFFFFFF
        ck = (ck * LCG_MUL + LCG_ADD) & 0xFFFFFFFF
        a[k] = ak
        c[k] = ck
    return a, c


def lcg_states(seed: int, count: int) -> np.ndarray:
    """The `count` LCG states after `seed` (uint32)."""
    if count <= 0:
        return np.empty(0, dtype=np.uint32)
    a, c = _jump_table(count)
    return ((a * np.uint64(seed & 0xFFFFFFFF) + c) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def synthetic_fill(nbytes: int, seed: int, dtype_code: int) -> tuple[bytes, int]:
    """(pattern bytes, final state), exactly like the C++ synthetic_fill."""
    size = _ELEMENT_BYTES.get(dtype_code, 1)
    count = nbytes // size
    s = lcg_states(seed, count)
    final = int(s[-1]) if count else seed & 0xFFFFFFFF
    if dtype_code in (DTYPE_CODES["int8"], DTYPE_CODES["uint8"]) or size == 1:
        data = (s >> 24).astype(np.uint8).tobytes()
    elif dtype_code == DTYPE_CODES["int16"]:
        data = (s >> 16).astype("<u2").tobytes()
    else:  # float32
        data = (((s >> 8) & 0xFFFF).astype(np.float32) / np.float32(32768.0)
                - np.float32(1.0)).astype("<f4").tobytes()
    return data + bytes(nbytes - len(data)), final


def synthetic_seed(seq: int) -> int:
    """Seed of inference number `seq`'s first input."""
    return (seq * SEED_MUL) & 0xFFFFFFFF


def synthetic_inputs(seq: int, inputs: list[tuple[int, int]]) -> list[bytes]:
    """Pattern bytes for every input tensor of inference `seq`.
    inputs: [(nbytes, dtype_code), ...] in the model's input order."""
    out = []
    state = synthetic_seed(seq)
    for nbytes, code in inputs:
        data, state = synthetic_fill(nbytes, state, code)
        out.append(data)
    return out
