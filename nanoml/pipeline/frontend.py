"""The host twin of TFLM's micro front end (the `micro_speech` preset), bit-exact
with TensorFlow's ``audio_microfrontend`` op, in numpy (no TensorFlow here).

    fe = MicroFrontend({"num_channels": 40})    # the MICRO_SPEECH preset, overridden
    frames = fe.process(int16_samples)          # uint16 [frames, channels]
    more = fe.process(next_chunk)               # continues the stream
    fe.reset()
    q = to_tensor(frames, pipeline.tensor)      # the model's input values

Per frame (window of `window_size_ms`, one every `window_step_ms`), all in the
integer arithmetic of the C library (tensorflow/lite/experimental/microfrontend/lib):

1. window: ``(sample * coeff) >> 12`` with a Hann window of 12-bit coefficients
   (``floor(4096 * float32(0.5 - 0.5 cos(2 pi (i + 0.5) / size)) + 0.5)``);
2. the windowed frame shifted left so its largest magnitude uses 15 bits, zero
   padded to a power of two and transformed by kissfft's 16-bit real FFT (fft16);
3. energy ``re**2 + im**2`` (int32) of the bins the filterbank uses;
4. mel filterbank: triangular 12-bit weights and unweights (mel scale
   ``1127 ln(1 + f/700)`` rounded to float32), summed in 64 bits, integer square
   root (rounded), shifted back down by the step-2 shift;
5. noise reduction: a per-channel running estimate (14-bit smoothing, even and
   odd channels apart, the signal scaled up by `smoothing_bits`), subtracted
   with a floor of `min_signal_remaining`;
6. PCAN gain control: gain from a piecewise-quadratic lookup table of
   ``2**gain_bits * (estimate + offset) ** -strength`` in the noise estimate,
   then a compressive "shrink";
7. log scale: fixed-point ln via a 128-segment table, scaled by ``2**scale_shift``
   and clamped to uint16; then integer division by `out_scale`.

Streaming: `process` keeps the samples not yet consumed by a frame and the noise
estimates, so a stream fed in chunks of any size gives the frames of the whole
clip. Frame j of a stream covers samples ``[j*step, j*step + size)``; a clip
shorter than one window gives no frame. Vectorised over frames (window, FFT,
filterbank, PCAN, log) and over channels (the noise estimate recurrence).

The tables follow TensorFlow's build of the library (and the Arduino libraries'
copies), which computes the window and the mel scale in double precision; the
PCAN table uses float32 ``powf``, called from the C library through ctypes (numpy
float32 when there is none), as are ``cosf``/``log1pf`` for the "tflm" flavor
(tflite-micro's current sources, in float32). docs/features.md says more.
"""

from __future__ import annotations

import functools

from ..errors import UsageError
from .spec import Frontend, TensorConversion, check_frontend

WINDOW_BITS = 12
FILTERBANK_BITS = 12
NOISE_REDUCTION_BITS = 14
PCAN_SNR_BITS = 12
PCAN_OUTPUT_BITS = 6
WIDE_DYNAMIC_BITS = 32
LOG_SCALE_LOG2 = 16
LOG_SEGMENTS_LOG2 = 7
LOG_COEFF = 45426
FLAVORS = ("tensorflow", "tflm")

# ln(1 + x) correction per 1/128 segment of the mantissa, in 1/65536 (the
# published table of the micro front end's log_lut; 129 values + padding).
LOG_LUT = (
    0, 224, 442, 654, 861, 1063, 1259, 1450, 1636, 1817, 1992, 2163, 2329, 2490, 2646, 2797,
    2944, 3087, 3224, 3358, 3487, 3611, 3732, 3848, 3960, 4068, 4172, 4272, 4368, 4460, 4549,
    4633, 4714, 4791, 4864, 4934, 5001, 5063, 5123, 5178, 5231, 5280, 5326, 5368, 5408, 5444,
    5477, 5507, 5533, 5557, 5578, 5595, 5610, 5622, 5631, 5637, 5640, 5641, 5638, 5633, 5626,
    5615, 5602, 5586, 5568, 5547, 5524, 5498, 5470, 5439, 5406, 5370, 5332, 5291, 5249, 5203,
    5156, 5106, 5054, 5000, 4944, 4885, 4825, 4762, 4697, 4630, 4561, 4490, 4416, 4341, 4264,
    4184, 4103, 4020, 3935, 3848, 3759, 3668, 3575, 3481, 3384, 3286, 3186, 3084, 2981, 2875,
    2768, 2659, 2549, 2437, 2323, 2207, 2090, 1971, 1851, 1729, 1605, 1480, 1353, 1224, 1094,
    963, 830, 695, 559, 421, 282, 142, 0, 0)


# ---------------------------------------------------------------- float32 helpers

@functools.lru_cache(maxsize=1)
def _libm():
    """cosf, log1pf, powf of the C library (what the compiled op calls), or None."""
    try:
        import ctypes
        import ctypes.util
        lib = ctypes.CDLL(None)                 # the process's symbols (Python links libm)
        if not hasattr(lib, "powf"):
            name = ctypes.util.find_library("m")
            if not name:
                return None
            lib = ctypes.CDLL(name)
        fns = {}
        for fname, nargs in (("cosf", 1), ("log1pf", 1), ("powf", 2)):
            f = getattr(lib, fname)
            f.restype = ctypes.c_float
            f.argtypes = [ctypes.c_float] * nargs
            fns[fname] = f
        return fns
    except (OSError, AttributeError):
        return None


def _f32(x):
    import numpy as np
    return np.float32(x)


def _cosf(x):
    import numpy as np
    lib = _libm()
    return np.float32(lib["cosf"](float(x))) if lib else np.cos(np.float32(x))


def _log1pf(x):
    import numpy as np
    lib = _libm()
    return np.float32(lib["log1pf"](float(x))) if lib else np.log1p(np.float32(x))


def _powf(x, y):
    import numpy as np
    lib = _libm()
    return np.float32(lib["powf"](float(x), float(y))) if lib \
        else np.power(np.float32(x), np.float32(y))


def _freq_to_mel(freq, flavor: str = "tensorflow"):
    """The mel scale, 1127 ln(1 + f/700), rounded to float32 (computed in double
    by TensorFlow's build, in float32 by TFLM's current sources)."""
    import math
    if flavor == "tflm":
        return _f32(1127.0) * _log1pf(_f32(freq) / _f32(700.0))
    return _f32(1127.0 * math.log1p(float(_f32(freq)) / 700.0))


def _msb(n: int) -> int:
    return int(n).bit_length()


# ---------------------------------------------------------------- tables

def window_coefficients(size: int, flavor: str = "tensorflow"):
    """The 12-bit Hann window (int16 [size])."""
    import math

    import numpy as np
    out = np.empty(size, dtype=np.int16)
    if flavor == "tflm":
        arg = _f32(math.pi) * _f32(2.0) / _f32(size)
        for i in range(size):
            v = _f32(0.5) - _f32(0.5) * _cosf(arg * (_f32(i) + _f32(0.5)))
            out[i] = int(np.floor(v * _f32(1 << WINDOW_BITS) + _f32(0.5)))
        return out
    arg = float(_f32(math.pi * 2.0 / float(_f32(size))))
    for i in range(size):
        v = _f32(0.5 - 0.5 * math.cos(arg * (i + 0.5)))
        out[i] = math.floor(float(v * _f32(1 << WINDOW_BITS)) + 0.5)
    return out


def filterbank_bands(sample_rate: int, spectrum_size: int, num_channels: int,
                     lower: float, upper: float, flavor: str = "tensorflow"):
    """The mel filterbank as bands of consecutive FFT bins: (start_index,
    end_index, edges, weights, unweights). Band c (0..num_channels) covers bins
    ``start_index + edges[c] .. start_index + edges[c+1] - 1``; weights/unweights
    (int64 [end_index - start_index], 12-bit) are each bin's weight in its own
    band and in the band before it. Output channel k is band k+1's weighted sum
    plus band k's unweighted sum (filterbank.c's accumulation)."""
    import math

    import numpy as np
    tf = flavor != "tflm"

    def mel(f):
        return _freq_to_mel(f, flavor)

    n1 = num_channels + 1
    mel_low = mel(lower)
    mel_hi = mel(upper)
    spacing = (mel_hi - mel_low) / _f32(n1)
    centers = [mel_low + spacing * _f32(i + 1) for i in range(n1)]
    if tf:
        hz_per_sbin = _f32(0.5 * sample_rate / float(_f32(spectrum_size) - _f32(1)))
        start_index = int(1.5 + float(_f32(lower) / hz_per_sbin))
    else:
        hz_per_sbin = _f32(0.5) * _f32(sample_rate) / (_f32(spectrum_size) - _f32(1))
        start_index = int(_f32(1.5) + _f32(lower) / hz_per_sbin)
    weights: list[int] = []
    unweights: list[int] = []
    edges = [0]
    end_index = 0
    freq = start_index
    for chan in range(n1):
        first = freq
        while freq < 1 << 15 and mel(_f32(freq) * hz_per_sbin) <= centers[chan]:
            freq += 1
        denom = mel_low if chan == 0 else centers[chan - 1]
        for f in range(first, freq):
            if f >= spectrum_size:
                break
            w = (centers[chan] - mel(_f32(f) * hz_per_sbin)) / (centers[chan] - denom)
            one = 1 << FILTERBANK_BITS
            if tf:
                weights.append(math.floor(float(w * _f32(one)) + 0.5))
                unweights.append(math.floor((1.0 - float(w)) * one + 0.5))
            else:
                weights.append(int(np.floor(w * _f32(one) + _f32(0.5))))
                unweights.append(int(np.floor((_f32(1.0) - w) * _f32(one) + _f32(0.5))))
        edges.append(freq - start_index)
        end_index = max(end_index, freq)
    if end_index >= spectrum_size:
        raise UsageError(f"micro front end: the filterbank needs frequency bin {end_index} but "
                         f"the spectrum has {spectrum_size} bins",
                         hint="lower upper_band_limit or num_channels, or use a longer window")
    return (start_index, end_index, np.array(edges, dtype=np.intp),
            np.array(weights, dtype=np.int64), np.array(unweights, dtype=np.int64))


def pcan_lut(strength: float, offset: float, gain_bits: int, input_bits: int):
    """The gain table of pcan_gain_control_util.c: (lut0, lut1, y0, a1, a2) with
    y0/a1/a2 int32 arrays indexed by interval (0..32; 0 and 1 unused)."""
    import numpy as np

    def gain(x: int) -> int:
        xf = _f32(x) / _f32((1 << (input_bits % 32)) & 0xFFFFFFFF)
        g = _f32((1 << gain_bits) & 0xFFFFFFFF) * _powf(xf + _f32(offset), -_f32(strength))
        if g > _f32(0x7FFF):
            return 0x7FFF
        return int(np.int16(int(g + _f32(0.5))))

    y0 = np.zeros(WIDE_DYNAMIC_BITS + 1, dtype=np.int32)
    a1 = np.zeros_like(y0)
    a2 = np.zeros_like(y0)
    for interval in range(2, WIDE_DYNAMIC_BITS + 1):
        x0 = 1 << (interval - 1)
        x1 = x0 + (x0 >> 1)
        x2 = x0 + (x0 - 1) if interval == WIDE_DYNAMIC_BITS else 2 * x0
        g0, g1, g2 = gain(x0), gain(x1), gain(x2)
        d1, d2 = g1 - g0, g2 - g0
        c1 = 4 * d1 - d2
        y0[interval] = g0
        a1[interval] = ((c1 + 0x8000) & 0xFFFF) - 0x8000         # (int16_t)
        a2[interval] = ((d2 - c1 + 0x8000) & 0xFFFF) - 0x8000
    return gain(0), gain(1), y0, a1, a2


# ---------------------------------------------------------------- the front end

class MicroFrontend:
    """TFLM's micro front end over an int16 sample stream (see the module doc)."""

    def __init__(self, params: dict | Frontend | None = None, flavor: str = "tensorflow"):
        """`params`: overrides of MICRO_SPEECH (checked by spec.check_frontend).
        `flavor`: "tensorflow" (the tables of TensorFlow's op, the training
        reference) or "tflm" (those of tflite-micro's current C sources, which
        compute the window and mel tables in float32; see docs/features.md)."""
        import numpy as np
        if flavor not in FLAVORS:
            raise UsageError(f"unknown micro front end flavor {flavor!r}",
                             hint="use " + " or ".join(FLAVORS))
        self.flavor = flavor
        if isinstance(params, Frontend):
            params = params.params
        self.params = check_frontend("micro_speech", dict(params or {})).params
        p = self.params
        rate = int(p["sample_rate"])
        self.size = int(p["window_size_ms"]) * rate // 1000
        self.step = int(p["window_step_ms"]) * rate // 1000
        if self.size < 4 or self.step < 1:
            raise UsageError(f"micro front end: a {p['window_size_ms']} ms window at {rate} Hz "
                             f"is {self.size} samples (at least 4 needed)",
                             hint="use a longer window_size_ms or a higher sample_rate")
        self.coefficients = window_coefficients(self.size, flavor).astype(np.int32)
        fft_size = 1
        while fft_size < self.size:
            fft_size <<= 1
        from .fft16 import RealFft16
        self.fft = RealFft16(fft_size)
        self.fft_size = fft_size
        self.num_channels = int(p["num_channels"])
        self.start_index, self.end_index, self.edges, self.weights, self.unweights = \
            filterbank_bands(
            rate, fft_size // 2 + 1, self.num_channels, float(p["lower_band_limit"]),
            float(p["upper_band_limit"]), flavor)
        # noise reduction (float32 config times 2**14, truncated to uint16)
        self.smoothing_bits = int(p["smoothing_bits"])
        scale = _f32(1 << NOISE_REDUCTION_BITS)
        even = int(_f32(p["even_smoothing"]) * scale) & 0xFFFF
        odd = int(_f32(p["odd_smoothing"]) * scale) & 0xFFFF
        self.min_signal = int(_f32(p["min_signal_remaining"]) * scale) & 0xFFFF
        smooth = np.array([even if i % 2 == 0 else odd for i in range(self.num_channels)],
                          dtype=np.uint64)
        self.smoothing = smooth
        self.one_minus = (np.uint64(1 << NOISE_REDUCTION_BITS) - smooth).astype(np.uint64)
        # PCAN and log
        self.correction_bits = _msb(fft_size) - 1 - FILTERBANK_BITS // 2
        self.enable_pcan = bool(p["enable_pcan"])
        self.snr_shift = int(p["gain_bits"]) - self.correction_bits - PCAN_SNR_BITS
        self.lut = pcan_lut(float(p["pcan_strength"]), float(p["pcan_offset"]),
                            int(p["gain_bits"]), self.smoothing_bits - self.correction_bits)
        self.enable_log = bool(p["enable_log"])
        self.scale_shift = int(p["scale_shift"])
        self.out_scale = int(p["out_scale"])
        self._log_lut = np.array(LOG_LUT, dtype=np.int64)
        self.reset()

    # -- state ---------------------------------------------------------------
    def reset(self) -> None:
        """Forget the stream: no pending samples, noise estimates zero."""
        import numpy as np
        self._pending = np.zeros(0, dtype=np.int16)
        self._estimate = np.zeros(self.num_channels, dtype=np.uint64)

    def frames_for(self, n_samples: int) -> int:
        """Frames a fresh front end makes from `n_samples` samples."""
        return 0 if n_samples < self.size else 1 + (n_samples - self.size) // self.step

    # -- processing ----------------------------------------------------------
    def process(self, samples) -> "np.ndarray":  # noqa: F821
        """Feed int16 samples; the frames completed by them (uint16 [frames, channels])."""
        import numpy as np
        samples = np.asarray(samples)
        if samples.dtype != np.int16:
            raise UsageError(f"the micro front end takes int16 samples (got {samples.dtype})",
                             hint="read the audio with nanoml.pipeline.wav.read_wav")
        buf = np.concatenate([self._pending, samples.reshape(-1)])
        n = self.frames_for(len(buf))
        if n == 0:
            self._pending = buf
            return np.zeros((0, self.num_channels), dtype=np.uint16)
        self._pending = buf[n * self.step:].copy()
        out = []
        chunk = 64      # frames per vectorised block (cache-sized; bounds the memory)
        for s in range(0, n, chunk):
            idx = (np.arange(s, min(n, s + chunk)) * self.step)[:, None] + np.arange(self.size)
            out.append(self._frames(buf[idx]))
        return np.concatenate(out)

    def _frames(self, windows):
        import numpy as np
        # 1. window (int16 result)
        w = ((windows.astype(np.int32) * self.coefficients) >> WINDOW_BITS).astype(np.int16)
        max_abs = np.abs(w).max(axis=1).astype(np.int64)     # int16 abs: -32768 stays negative
        shift = 15 - _bit_length(np.maximum(max_abs, 0))
        # 2. FFT input: (uint16)x << shift, stored as int16
        x = np.zeros((w.shape[0], self.fft_size), dtype=np.int16)
        x[:, :self.size] = ((w.astype(np.int32) & 0xFFFF) << shift[:, None]).astype(np.int16)
        re, im = self.fft(x)
        # 3. energy in int32 (wraps), then used as an unsigned 64-bit magnitude
        band = slice(self.start_index, self.end_index)
        e = (re[:, band].astype(np.int64) ** 2 + im[:, band].astype(np.int64) ** 2)
        energy = e.astype(np.uint32).astype(np.int32).astype(np.int64)
        # 4. filterbank: sums over each band's bins by differences of running sums
        # (int64 arithmetic wraps modulo 2**64 exactly as the C's uint64 does)
        rows = energy.shape[0]
        cw = np.zeros((rows, energy.shape[1] + 1), dtype=np.int64)
        cu = np.zeros_like(cw)
        np.cumsum(energy * self.weights, axis=1, out=cw[:, 1:])
        np.cumsum(energy * self.unweights, axis=1, out=cu[:, 1:])
        sw = cw[:, self.edges[1:]] - cw[:, self.edges[:-1]]
        su = cu[:, self.edges[1:]] - cu[:, self.edges[:-1]]
        acc = (sw[:, 1:] + su[:, :-1]).view(np.uint64)
        signal = (_sqrt64(acc) >> shift[:, None].astype(np.uint64)).astype(np.uint64)
        # 5. noise reduction (sequential over frames)
        signal = self._noise_reduction(signal)
        # 6. PCAN
        if self.enable_pcan:
            signal = self._pcan(signal)
        # 7. log
        out = self._log(signal)
        if self.out_scale != 1:
            out = out // self.out_scale
        return out.astype(np.uint16)

    def _noise_reduction(self, signal):
        import numpy as np
        mask32 = np.uint64(0xFFFFFFFF)
        nb = np.uint64(NOISE_REDUCTION_BITS)
        sb = np.uint64(self.smoothing_bits)
        scaled = (signal << sb) & mask32
        up = scaled * self.smoothing
        est = self._estimate
        estimates = np.empty_like(signal)
        om = self.one_minus
        for t in range(signal.shape[0]):
            est = ((up[t] + est * om) >> nb) & mask32
            estimates[t] = est
        self._estimate = est.copy()
        self._estimates = estimates
        capped = np.minimum(estimates, scaled)
        floor = (signal * np.uint64(self.min_signal)) >> nb
        sub = (scaled - capped) >> sb
        return np.maximum(sub, floor) & mask32

    def _pcan(self, signal):
        import numpy as np
        x = self._estimates.astype(np.int64)
        lut0, lut1, y0, a1, a2 = self.lut
        interval = _bit_length(x)
        iv = np.clip(interval, 2, WIDE_DYNAMIC_BITS)
        frac = np.where(iv < 11, (x << np.maximum(11 - iv, 0)) & 0xFFFFFFFF,
                        x >> np.maximum(iv - 11, 0)) & 0x3FF
        r = _i32((a2[iv].astype(np.int64) * frac) >> 5)
        r = _i32(r + _i32(a1[iv].astype(np.int64) << 5))
        r = _i32(r * frac)
        r = _i32((r + (1 << 14)) >> 15)
        r = _i32(r + y0[iv])
        gain = r.astype(np.int16).astype(np.int64)
        gain = np.where(x == 0, lut0, np.where(x == 1, lut1, np.where(x == 2, y0[2], gain)))
        gain = gain.astype(np.int64) & 0xFFFFFFFF            # int16 -> uint32
        shift = self.snr_shift % 64
        snr = ((signal.astype(np.uint64) * gain.astype(np.uint64)) >> np.uint64(shift)) \
            & np.uint64(0xFFFFFFFF)
        small = snr < (2 << PCAN_SNR_BITS)
        a = (snr * snr) >> np.uint64(2 + 2 * PCAN_SNR_BITS - PCAN_OUTPUT_BITS)
        b = (snr >> np.uint64(PCAN_SNR_BITS - PCAN_OUTPUT_BITS)) - np.uint64(1 << PCAN_OUTPUT_BITS)
        return np.where(small, a, b) & np.uint64(0xFFFFFFFF)

    def _log(self, signal):
        import numpy as np
        v = signal.astype(np.int64)
        if not self.enable_log:
            return np.minimum(v, 0xFFFF)
        cb = self.correction_bits
        v = (v >> -cb) if cb < 0 else ((v << cb) & 0xFFFFFFFF)
        big = v > 1
        x = np.where(big, v, 2)
        integer = _bit_length(x) - 1
        frac = x - (np.int64(1) << integer)
        frac = np.where(integer < LOG_SCALE_LOG2, frac << np.maximum(LOG_SCALE_LOG2 - integer, 0),
                        frac >> np.maximum(integer - LOG_SCALE_LOG2, 0))
        frac = _i32(frac)
        base = frac >> (LOG_SCALE_LOG2 - LOG_SEGMENTS_LOG2)
        c0 = self._log_lut[base]
        c1 = self._log_lut[base + 1]
        seg_unit = (1 << LOG_SCALE_LOG2) >> LOG_SEGMENTS_LOG2
        rel = _i32((c1 - c0) * (frac - seg_unit * base)) >> LOG_SCALE_LOG2
        fraction = (frac + c0 + rel) & 0xFFFFFFFF
        log2 = ((integer << LOG_SCALE_LOG2) + fraction) & 0xFFFFFFFF
        rnd = (1 << LOG_SCALE_LOG2) // 2
        loge = ((LOG_COEFF * log2 + rnd) >> LOG_SCALE_LOG2) & 0xFFFFFFFF
        scaled = ((((loge << self.scale_shift) & 0xFFFFFFFF) + rnd) & 0xFFFFFFFF) >> LOG_SCALE_LOG2
        out = np.where(big, scaled, 0)
        return np.minimum(out, 0xFFFF)


def _i32(x):
    import numpy as np
    return np.asarray(x).astype(np.int64).astype(np.int32).astype(np.int64)


def _bit_length(x):
    """Exact bit length of non-negative integers below 2**53 (int64 out)."""
    import numpy as np
    return np.frexp(np.asarray(x, dtype=np.float64))[1].astype(np.int64)


def _sqrt64(v):
    """Sqrt64/Sqrt32 of filterbank.c: the integer square root rounded to nearest
    (up when the remainder exceeds the root), uint64 in, uint64 out (<= 2**32-1;
    below 2**32 at most 0xFFFF)."""
    import math

    import numpy as np
    v = np.asarray(v, dtype=np.uint64)
    huge = v >= np.uint64(1 << 62)
    vs = np.where(huge, np.uint64(0), v)
    r = np.floor(np.sqrt(vs.astype(np.float64))).astype(np.uint64)
    one = np.uint64(1)
    r = np.where(r * r > vs, r - one, r)
    r = np.where(r * r > vs, r - one, r)
    r = np.where((r + one) * (r + one) <= vs, r + one, r)
    r = np.where((r + one) * (r + one) <= vs, r + one, r)
    rem = vs - r * r
    small = vs < np.uint64(1 << 32)
    cap = np.where(small, np.uint64(0xFFFF), np.uint64(0xFFFFFFFF))
    r = np.where((rem > r) & (r != cap), r + one, r)
    if huge.any():
        r = r.copy()
        for idx in zip(*np.nonzero(huge)):
            n = int(v[idx])
            s = math.isqrt(n)
            if n - s * s > s and s != 0xFFFFFFFF:
                s += 1
            r[idx] = s
    return r


# ---------------------------------------------------------------- tensor conversion

def to_tensor(raw, conversion: TensorConversion):
    """The model's input values for front-end output `raw` (uint16): the integer
    formula of nanoml.pipeline.spec (identical on the board), or, for a float32
    input, ``raw * feature_scale`` in float32."""
    import numpy as np
    raw = np.asarray(raw)
    if conversion.dtype == "float32":
        return (raw.astype(np.float32) * np.float32(conversion.feature_scale)).astype(np.float32)
    dtypes = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16}
    if conversion.dtype not in dtypes:
        raise UsageError(f"a pipeline cannot fill a {conversion.dtype} input tensor",
                         hint="the model's input must be int8, uint8, int16 or float32")
    v = raw.astype(np.int64)
    shift = int(conversion.shift)
    q = conversion.zero_point + ((v * int(conversion.multiplier) + (1 << (shift - 1))) >> shift)
    return np.clip(q, conversion.qmin, conversion.qmax).astype(dtypes[conversion.dtype])
