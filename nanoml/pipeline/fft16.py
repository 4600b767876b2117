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


def _w16(x):
    """Store an int result into an int16 (wraps, as C does on this machine)."""
    import numpy as np
    return x.astype(np.int16)


def _sround(x):
    """``(x + 2**14) >> 15`` of an int32 product, stored as int16."""
    return _w16((x + (1 << 14)) >> 15)


def _fixdiv(r, i, k: int):
    import numpy as np
    c = np.int32(32767 // k)
    return _sround(r * c), _sround(i * c)


def _cmul(ar, ai, br, bi):
    """int16 x int16 (twiddles as int32) products, rounded back to int16."""
    import numpy as np
    ar = ar.astype(np.int32)
    ai = ai.astype(np.int32)
    return _sround(ar * br - ai * bi), _sround(ar * bi + ai * br)


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
            k = np.arange(m)
            self._stage_tw.append([(self.tw[(q * k * fs) % n, 0], self.tw[(q * k * fs) % n, 1])
                                   for q in range(1, p)])

    def __call__(self, x):
        """x: int16 [frames, nfft] -> (real, imag) int32 [frames, nfft/2+1] (int16 values)."""
        import numpy as np
        x = np.asarray(x).astype(np.int16)
        frames = x.shape[0]
        n = self.ncfft
        re = x[:, 0::2][:, self.order]
        im = x[:, 1::2][:, self.order]
        for (p, m, _fs), tws in zip(self.stages, self._stage_tw):
            shape = (frames, n // (p * m), p, m)
            re = re.reshape(shape)
            im = im.reshape(shape)
            if p == 2:
                re, im = self._bfly2(re, im, tws)
            else:
                re, im = self._bfly4(re, im, tws)
        re = re.reshape(frames, n)
        im = im.reshape(frames, n)
        return self._split(re, im)

    @staticmethod
    def _bfly2(re, im, tws):
        import numpy as np
        (t1r, t1i), = tws
        f0r, f0i = _fixdiv(re[:, :, 0], im[:, :, 0], 2)
        f1r, f1i = _fixdiv(re[:, :, 1], im[:, :, 1], 2)
        tr, ti = _cmul(f1r, f1i, t1r, t1i)
        out_r = np.empty(re.shape, dtype=np.int16)
        out_i = np.empty(re.shape, dtype=np.int16)
        np.add(f0r, tr, out=out_r[:, :, 0])          # int16 + int16 wraps like C's store
        np.subtract(f0r, tr, out=out_r[:, :, 1])
        np.add(f0i, ti, out=out_i[:, :, 0])
        np.subtract(f0i, ti, out=out_i[:, :, 1])
        return out_r, out_i

    @staticmethod
    def _bfly4(re, im, tws):
        import numpy as np
        (t1r, t1i), (t2r, t2i), (t3r, t3i) = tws
        f0r, f0i = _fixdiv(re[:, :, 0], im[:, :, 0], 4)
        f1r, f1i = _fixdiv(re[:, :, 1], im[:, :, 1], 4)
        f2r, f2i = _fixdiv(re[:, :, 2], im[:, :, 2], 4)
        f3r, f3i = _fixdiv(re[:, :, 3], im[:, :, 3], 4)
        s0r, s0i = _cmul(f1r, f1i, t1r, t1i)
        s1r, s1i = _cmul(f2r, f2i, t2r, t2i)
        s2r, s2i = _cmul(f3r, f3i, t3r, t3i)
        # int16 +/- int16 wraps like C's store into a short
        s5r, s5i = f0r - s1r, f0i - s1i
        f0r, f0i = f0r + s1r, f0i + s1i
        s3r, s3i = s0r + s2r, s0i + s2i
        s4r, s4i = s0r - s2r, s0i - s2i
        out_r = np.empty(re.shape, dtype=np.int16)
        out_i = np.empty(re.shape, dtype=np.int16)
        np.subtract(f0r, s3r, out=out_r[:, :, 2])
        np.subtract(f0i, s3i, out=out_i[:, :, 2])
        np.add(f0r, s3r, out=out_r[:, :, 0])
        np.add(f0i, s3i, out=out_i[:, :, 0])
        np.add(s5r, s4i, out=out_r[:, :, 1])
        np.subtract(s5i, s4r, out=out_i[:, :, 1])
        np.subtract(s5r, s4i, out=out_r[:, :, 3])
        np.add(s5i, s4r, out=out_i[:, :, 3])
        return out_r, out_i

    def _split(self, re, im):
        import numpy as np
        n = self.ncfft
        frames = re.shape[0]
        out_r = np.zeros((frames, n + 1), dtype=np.int32)
        out_i = np.zeros((frames, n + 1), dtype=np.int32)
        dr, di = _fixdiv(re[:, 0], im[:, 0], 2)
        out_r[:, 0] = dr + di
        out_r[:, n] = dr - di
        k = np.arange(1, n // 2 + 1)
        pkr, pki = _fixdiv(re[:, k], im[:, k], 2)
        nkr, nki = _fixdiv(re[:, n - k], -im[:, n - k], 2)
        f1r, f1i = (pkr + nkr).astype(np.int32), (pki + nki).astype(np.int32)
        f2r, f2i = pkr - nkr, pki - nki
        twr, twi = _cmul(f2r, f2i, self.super_tw[:, 0], self.super_tw[:, 1])
        twr, twi = twr.astype(np.int32), twi.astype(np.int32)
        # HALF_OF shifts the int sum, then the store into a short wraps
        out_r[:, k] = _w16((f1r + twr) >> 1)
        out_i[:, k] = _w16((f1i + twi) >> 1)
        out_r[:, n - k] = _w16((f1r - twr) >> 1)
        out_i[:, n - k] = _w16((twi - f1i) >> 1)
        return out_r, out_i
