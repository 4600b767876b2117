"""The host twin of TFLM's micro front end (nanoml.pipeline.frontend) against
TensorFlow's audio_microfrontend op: 0 differing values on speech, silence,
noise, tones, clipping, DC offset, very short and long clips, and with
non-default parameters (over 200 clips in all: each test asserts its own
count). The op runs in this process (one TensorFlow import for the module);
the tests that need it skip when TensorFlow is absent. Streaming, the tensor
conversion and the refusals need no TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path
from speech import VOICES, WORDS, require_speech, say, say_many

from nanoml.errors import UsageError
from nanoml.pipeline.frontend import MicroFrontend, to_tensor
from nanoml.pipeline.spec import (MICRO_SPEECH, MICRO_SPEECH_FEATURE_SCALE, PipelineError,
                                  conversion_for)
from nanoml.pipeline.wav import read_wav

OP_NAMES = {"window_size_ms": "window_size", "window_step_ms": "window_step"}
RATE = 16000


@pytest.fixture(scope="module")
def op():
    """run(samples, params, float_out=False): the op's output for int16 samples."""
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")
    try:
        from tensorflow.lite.experimental.microfrontend.python.ops import \
            audio_microfrontend_op as mf
    except ImportError as e:             # a TensorFlow build without the contrib op
        pytest.skip(f"TensorFlow has no audio_microfrontend op ({e})")

    def run(samples, params=None, float_out=False):
        p = {**MICRO_SPEECH, **(params or {})}
        kw = {OP_NAMES.get(k, k): v for k, v in p.items()}
        out = mf.audio_microfrontend(
            tf.constant(np.asarray(samples, dtype=np.int16)), left_context=0, right_context=0,
            frame_stride=1, zero_padding=False,
            out_type=tf.float32 if float_out else tf.uint16, **kw)
        return out.numpy()
    return run


def compare(op, clips, params=None) -> tuple[int, int, list[str]]:
    """(clips compared, values compared, one line per clip that differs)."""
    fe = MicroFrontend(params)
    values, bad = 0, []
    for name, x in clips:
        fe.reset()
        mine = fe.process(x)
        ref = op(x, params)
        assert mine.dtype == np.uint16
        if mine.shape != ref.shape:
            bad.append(f"{name}: shape {mine.shape} vs the op's {ref.shape}")
            continue
        values += ref.size
        n = int((mine != ref).sum())
        if n:
            bad.append(f"{name}: {n} of {ref.size} values differ")
    return len(clips), values, bad


# ---------------------------------------------------------------- signals

def _noise(rng, n, level):
    return np.clip(rng.standard_normal(n) * level, -32768, 32767).astype(np.int16)


def _tone(freq, amp, n, rate=RATE, phase=0.0):
    t = np.arange(n) / rate
    return np.clip(np.round(amp * np.sin(2 * np.pi * freq * t + phase)),
                   -32768, 32767).astype(np.int16)


def _square(freq, n, rate=RATE):
    period = rate / freq
    return np.where((np.arange(n) % period) < period / 2, 32767, -32768).astype(np.int16)


def synthetic_clips() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(2026)
    clips = []
    for n in (RATE // 2, RATE, 3 * RATE):
        clips.append((f"silence {n}", np.zeros(n, np.int16)))
    for level in (1, 10, 100, 1000, 3000, 8000, 20000, 40000):     # 40000: clipped noise
        for seed in range(3):
            clips.append((f"noise {level} #{seed}", _noise(rng, RATE, level)))
    for freq in (60, 125, 440, 1000, 2500, 4000, 7000, 7900):
        for amp in (30, 3000, 32767):
            clips.append((f"tone {freq} Hz x{amp}", _tone(freq, amp, RATE)))
    for freq in (50, 100, 400, 1000, 3000, 8000):                   # full-scale square waves
        clips.append((f"square {freq} Hz", _square(freq, RATE)))
    clips.append(("full scale +", np.full(RATE, 32767, np.int16)))
    clips.append(("full scale -", np.full(RATE, -32768, np.int16)))
    for dc in (-20000, -500, 700, 15000):
        clips.append((f"dc {dc} + noise", np.clip(dc + rng.standard_normal(RATE) * 300,
                                                  -32768, 32767).astype(np.int16)))
        clips.append((f"dc {dc} + tone", np.clip(dc + _tone(800, 2000, RATE).astype(int),
                                                 -32768, 32767).astype(np.int16)))
    for n in (0, 1, 100, 479, 480, 481, 799, 800, 801):             # window 480, step 320
        clips.append((f"short {n}", _noise(rng, n, 2000)))
    impulses = np.zeros(RATE, np.int16)
    impulses[::1234] = 32767
    clips.append(("impulses", impulses))
    sweep = np.arange(2 * RATE) / RATE
    clips.append(("chirp", (12000 * np.sin(2 * np.pi * (50 + 1900 * sweep) * sweep))
                  .astype(np.int16)))
    long = np.concatenate([_noise(rng, 2 * RATE, 30)] + [
        np.concatenate([_tone(300 * (k + 1), 9000, RATE // 2), _noise(rng, RATE, 200 * k)])
        for k in range(8)])                                        # 14 s
    clips.append(("long 14 s", long))
    return clips


def test_synthetic_signals_are_bit_exact(op):
    clips = synthetic_clips()
    n, values, bad = compare(op, clips)
    assert n >= 75 and values > 100_000
    assert not bad, "\n".join(bad)


def test_short_clips_give_no_frame_and_the_op_agrees(op):
    fe = MicroFrontend()
    for n, frames in ((0, 0), (479, 0), (480, 1), (799, 1), (800, 2), (16000, 49)):
        x = np.ones(n, np.int16)
        assert fe.frames_for(n) == frames
        fe.reset()
        assert fe.process(x).shape == (frames, 40) == op(x).shape


# ---------------------------------------------------------------- speech

@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    require_speech()
    folder = tmp_path_factory.mktemp("speech")
    paths = say_many(WORDS, VOICES, (120, 190), folder)
    return [(p.name, read_wav(p, RATE)[0]) for p in paths]


def test_speech_is_bit_exact(op, speech, tmp_path):
    rng = np.random.default_rng(7)
    clips = list(speech)
    # the same words in background noise, with a DC offset, padded to 1 s as training does
    for name, x in speech[::2]:
        y = np.zeros(RATE, np.int16)
        y[:min(len(x), RATE)] = x[:RATE]
        noisy = np.clip(y.astype(int) + 400 + rng.standard_normal(RATE) * 150, -32768, 32767)
        clips.append((f"{name} in noise", noisy.astype(np.int16)))
    sentence = say("the quick brown fox jumps over the lazy dog, then says yes and no "
                   "twice, and stops to listen for a while before it goes on",
                   tmp_path / "sentence.wav", "en-us", 110)
    clips.append(("sentence", read_wav(sentence, RATE)[0]))
    n, values, bad = compare(op, clips)
    assert n >= 150 and values > 200_000
    assert len(clips[-1][1]) > 10 * RATE                           # a long clip of speech
    assert not bad, "\n".join(bad)


# ---------------------------------------------------------------- other parameters

PARAMS = [
    {"sample_rate": 8000, "num_channels": 32, "upper_band_limit": 3900.0},
    {"num_channels": 32},
    {"enable_pcan": False},
    {"enable_log": False},
    {"enable_pcan": False, "enable_log": False},
    {"window_size_ms": 25, "window_step_ms": 10},
    {"window_size_ms": 64, "window_step_ms": 32, "num_channels": 64},
    {"sample_rate": 22050, "window_size_ms": 24, "window_step_ms": 12},
    {"scale_shift": 3, "smoothing_bits": 5, "out_scale": 2},
    {"even_smoothing": 0.1, "odd_smoothing": 0.2, "min_signal_remaining": 0.3},
    {"pcan_strength": 0.5, "pcan_offset": 10.0, "gain_bits": 18},
    {"lower_band_limit": 300.0, "upper_band_limit": 4000.0, "num_channels": 20},
]


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_other_parameters_are_bit_exact(op, params):
    rng = np.random.default_rng(len(str(params)))
    rate = params.get("sample_rate", RATE)
    clips = [("noise", _noise(rng, rate, 2500)), ("tone", _tone(rate / 7, 12000, rate)),
             ("square", _square(rate / 40, rate)),
             ("quiet noise then tone", np.concatenate([_noise(rng, rate, 20),
                                                        _tone(rate / 11, 5000, rate)]))]
    n, values, bad = compare(op, clips, params)
    assert n == 4 and values > 0
    assert not bad, "\n".join(bad)


def test_float32_tensor_is_the_float_op_output_times_the_feature_scale(op):
    """micro_speech training's float features: the op's float output x 10/256."""
    x = _noise(np.random.default_rng(3), RATE, 3000)
    raw = MicroFrontend().process(x)
    conv = conversion_for("float32", None, None, MICRO_SPEECH_FEATURE_SCALE)
    want = (op(x, float_out=True) * np.float32(10.0 / 256.0)).astype(np.float32)
    got = to_tensor(raw, conv)
    assert got.dtype == np.float32 and np.array_equal(got, want)


# ---------------------------------------------------------------- streaming (no TensorFlow)

def test_chunks_of_any_size_give_the_frames_of_the_whole_clip():
    rng = np.random.default_rng(11)
    x = np.concatenate([_noise(rng, 3 * RATE, 2000), _tone(900, 8000, 2 * RATE)])
    fe = MicroFrontend()
    whole = fe.process(x)
    assert whole.shape == (fe.frames_for(len(x)), 40)
    for sizes in ([1] * 1000 + [len(x)], [320] * 200, list(rng.integers(1, 2000, 400))):
        fe.reset()
        parts, pos = [], 0
        for s in sizes:
            parts.append(fe.process(x[pos:pos + s]))
            pos += s
        parts.append(fe.process(x[pos:]))
        got = np.concatenate(parts)
        assert got.shape == whole.shape and np.array_equal(got, whole)


def test_reset_forgets_the_stream():
    rng = np.random.default_rng(5)
    a, b = _noise(rng, RATE, 5000), _noise(rng, RATE, 300)
    fe = MicroFrontend()
    fresh = fe.process(b)
    fe.reset()
    fe.process(a)
    fe.reset()
    assert np.array_equal(fe.process(b), fresh)
    fe.reset()
    fe.process(a)
    after_a = fe.process(b)                    # noise estimates (and pending samples) carried
    assert not np.array_equal(after_a[:5], fresh[:5])


# ---------------------------------------------------------------- tensor conversion

def test_int8_conversion_matches_the_models_quantization():
    """Every uint16 value: the integer formula vs round(v * 10/256 / scale) + zp
    (the float reference of micro_speech's training): at most 1 LSB apart, and
    only where the float value is within a hair of a rounding tie."""
    from nanoml.model.tflite import load
    m = load(shared_path("models", "micro_speech_quantized.tflite"))
    t = m.input_tensors[0]
    scale, zp = t.quant.scale[0], t.quant.zero_point[0]
    conv = conversion_for(t.dtype, scale, zp, MICRO_SPEECH_FEATURE_SCALE)
    v = np.arange(65536, dtype=np.uint16)
    got = to_tensor(v, conv).astype(int)
    real = v.astype(np.float64) * 10.0 / 256.0 / scale
    want = np.clip(np.floor(real + 0.5) + zp, -128, 127).astype(int)
    diff = got != want
    assert np.abs(got - want).max() <= 1
    frac = real - np.floor(real)
    assert np.all(np.abs(frac[diff] - 0.5) < 1e-5), "a difference away from a tie"
    assert diff.sum() <= 0.001 * v.size, f"{diff.sum()} near-tie differences"
    assert got.min() == -128 and got.max() == 127


def test_conversion_rounds_and_clamps_like_the_formula():
    conv = conversion_for("uint8", 0.5, 3, 1.0)            # q = 3 + round(v * 2)
    assert to_tensor(np.array([0, 1, 2, 126, 200], np.uint16), conv).tolist() == \
        [3, 5, 7, 255, 255]
    assert to_tensor(np.zeros(3, np.uint16), conv).dtype == np.uint8


# ---------------------------------------------------------------- refusals

def test_refuses_samples_that_are_not_int16():
    with pytest.raises(UsageError, match="int16"):
        MicroFrontend().process(np.zeros(100, np.float32))


@pytest.mark.parametrize("params, match", [
    ({"upper_band_limit": 9000.0}, "Nyquist"),
    ({"num_channels": 0}, "num_channels"),
    ({"window_step_ms": 40}, "window_step_ms"),
    ({"bogus": 1}, "unknown key"),
])
def test_bad_parameters_are_one_line_errors(params, match):
    with pytest.raises(PipelineError, match=match):
        MicroFrontend(params)
