"""16-bit fixed-point real FFT with the integer arithmetic of kissfft (v130)
built with ``FIXED_POINT=16``, as TFLM's micro front end uses it
(``kiss_fftr``), vectorised over frames.

Written from the description of kissfft's fixed-point rules: every complex
value is a pair of int16; a product is ``(a*b + 2**14) >> 15`` in int32,
truncated to int16; each butterfly stage first divides its inputs by its
radix (multiplying by ``32767 // radix`` the same way); additions wrap to
int16 when stored. Twiddles are ``floor(0.5 + 32767 * cos/sin(phase))`` from
double-precision phases. The complex FFT of half the size runs on the
even/odd samples packed as (real, imag) and is split into the real spectrum
(``HALF_OF`` is an arithmetic shift of the int sum, before it is stored).
Only power-of-two sizes are needed (the front end pads its window to one),
so only the radix-4 and radix-2 butterflies exist here.
"""

from __future__ import annotations

import math


def _sround(x):
    """``(x + 2**14) >> 15`` of int32 products, stored as int16 (wraps as C does)."""
    import numpy as np
    return ((x + (1 << 14)) >> 15).astype(np.int16)


def _fixdiv(z, k: int):
    """C_FIXDIV: both parts (and all legs) divided by the radix `k`."""
    import numpy as np
    return _sround(z * np.int32(32767 // k))


def _cmul(z, tr, ti):
    """C_MUL of complex int16 values z ([2, ...]: re, im) by twiddles (int32)."""
    import numpy as np
    z32 = z.astype(np.int32)
    p = z32 * tr
    q = z32 * ti
    return _sround(np.stack([p[0] - q[1], q[0] + p[1]]))


def _factors(n: int) -> list[tuple[int, int]]:
    """kissfft's factorisation: (radix, remaining length) pairs, outermost first."""
    out = []
    p = 4
    floor_sqrt = math.floor(math.sqrt(n))
    while True:
        while n % p:
            p = 2 if p == 4 else 3 if p == 2 else p + 2
            if p > floor_sqrt:
                p = n
        n //= p
        out.append((p, n))
        if n <= 1:
            return out


def _leaf_order(factors, fstride: int = 1, offset: int = 0) -> list[int]:
    """Which input element lands at each output position before the butterflies."""
    p, m = factors[0]
    if m == 1:
        return [offset + j * fstride for j in range(p)]
    out: list[int] = []
    for j in range(p):
        out += _leaf_order(factors[1:], fstride * p, offset + j * fstride)
    return out


class RealFft16:
    """``kiss_fftr`` of ``nfft`` (a power of two >= 4) int16 samples."""

    def __init__(self, nfft: int):
        import numpy as np
        if nfft < 4 or nfft & (nfft - 1):
            raise ValueError(f"fft size {nfft} is not a power of two >= 4")
        self.nfft = nfft
        n = self.ncfft = nfft // 2
        self.factors = _factors(n)
        if any(p not in (2, 4) for p, _ in self.factors):
            raise ValueError(f"fft size {nfft}: radix other than 2 or 4")
        pi = math.pi
        tw = [(math.floor(0.5 + 32767 * math.cos(-2 * pi * i / n)),
               math.floor(0.5 + 32767 * math.sin(-2 * pi * i / n))) for i in range(n)]
        self.tw = np.array(tw, dtype=np.int32).reshape(n, 2)
        st = []
        for i in range(n // 2):
            phase = -pi * ((i + 1) / n + 0.5)
            st.append((math.floor(0.5 + 32767 * math.cos(phase)),
                       math.floor(0.5 + 32767 * math.sin(phase))))
        self.super_tw = np.array(st, dtype=np.int32).reshape(n // 2, 2)
        self.order = np.array(_leaf_order(self.factors), dtype=np.intp)
        # stages innermost first: (radix, m, fstride)
        stages = []
        stride = 1
        for p, m in self.factors:
            stages.append((p, m, stride))
            stride *= p
        self.stages = stages[::-1]
        self._stage_tw = []
        for p, m, fs in self.stages:
            idx = (np.arange(1, p)[:, None] * np.arange(m)[None, :] * fs) % n   # [p-1, m]
            self._stage_tw.append((self.tw[idx, 0], self.tw[idx, 1]))

    def __call__(self, x):
        """x: int16 [frames, nfft] -> (real, imag) int32 [frames, nfft/2+1] (int16 values)."""
        import numpy as np
        x = np.asarray(x).astype(np.int16)
        frames = x.shape[0]
        n = self.ncfft
        # complex values as int16 [2 (re, im), frames, ...]; int16 +/- int16 wraps
        # exactly like C's store of an int sum into a short
        z = np.stack([x[:, 0::2][:, self.order], x[:, 1::2][:, self.order]])
        for (p, m, _fs), (tr, ti) in zip(self.stages, self._stage_tw):
            z = _fixdiv(z.reshape(2, frames, n // (p * m), p, m), p)
            out = np.empty_like(z)
            f0 = z[:, :, :, 0]
            if p == 2:
                t = _cmul(z[:, :, :, 1], tr[0], ti[0])
                np.add(f0, t, out=out[:, :, :, 0])
                np.subtract(f0, t, out=out[:, :, :, 1])
            else:
                sc = _cmul(z[:, :, :, 1:], tr[:, :], ti[:, :])          # legs 1..3
                s0, s1, s2 = sc[:, :, :, 0], sc[:, :, :, 1], sc[:, :, :, 2]
                s5 = f0 - s1
                f0 = f0 + s1
                s3 = s0 + s2
                s4 = s0 - s2
                np.subtract(f0, s3, out=out[:, :, :, 2])
                np.add(f0, s3, out=out[:, :, :, 0])
                np.add(s5[0], s4[1], out=out[0, :, :, 1])
                np.subtract(s5[1], s4[0], out=out[1, :, :, 1])
                np.subtract(s5[0], s4[1], out=out[0, :, :, 3])
                np.add(s5[1], s4[0], out=out[1, :, :, 3])
            z = out
        return self._split(z.reshape(2, frames, n))

    def _split(self, z):
        """kiss_fftr's split of the packed complex FFT into the real spectrum."""
        import numpy as np
        n = self.ncfft
        frames = z.shape[1]
        out = np.zeros((2, frames, n + 1), dtype=np.int32)
        d = _fixdiv(z[:, :, 0], 2)
        out[0, :, 0] = d[0] + d[1]
        out[0, :, n] = d[0] - d[1]
        k = np.arange(1, n // 2 + 1)
        fpk = _fixdiv(z[:, :, k], 2)
        nk = z[:, :, n - k]
        fpnk = _fixdiv(np.stack([nk[0], -nk[1]]), 2)
        f1k = (fpk + fpnk).astype(np.int32)
        tw = _cmul(fpk - fpnk, self.super_tw[:, 0], self.super_tw[:, 1]).astype(np.int32)
        # HALF_OF shifts the int sum, then the store into a short wraps
        out[:, :, k] = ((f1k + tw) >> 1).astype(np.int16)
        out[0][:, n - k] = ((f1k[0] - tw[0]) >> 1).astype(np.int16)
        out[1][:, n - k] = ((tw[1] - f1k[1]) >> 1).astype(np.int16)
        return out[0], out[1]
