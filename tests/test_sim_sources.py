"""The virtual board's sensors from files (`sim --source`, `monitor --sim
--source`): an IMU CSV with a stride gives exactly the windows, normalised
values and outputs of a reference slicing done here; real time vs --fast;
the sim stops at the file's end; bad files and labels are one-line errors
with nothing written."""

from __future__ import annotations

import json
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from mutants import run_cli

from nanoml.model import tflite
from nanoml.pipeline.imu import ImuStream
from nanoml.pipeline.store import resolve, write_pipeline

ROOT = Path(__file__).resolve().parent.parent
GESTURE = ROOT / "examples" / "gesture" / "gesture_int8.tflite"
OFFSET, SCALE = [0.1, -0.2, 0.9], [0.5, 0.5, 0.25]
STRIDE, SAMPLES, RATE_HZ = 16, 64, 100
GESTURE_LABELS = ["idle", "shake", "punch", "circle"]


@pytest.fixture(scope="module")
def imu_model(tmp_path_factory) -> Path:
    m = tflite.load(GESTURE)
    p = resolve(m, imu=["ax", "ay", "az"], rate=RATE_HZ, stride=STRIDE, offset=OFFSET,
                scale=SCALE, labels=GESTURE_LABELS)
    out = tmp_path_factory.mktemp("imu") / "gesture_pipe.tflite"
    out.write_bytes(write_pipeline(bytes(m.raw), p))
    return out


def samples(n=300, seed=3):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 3)) * [0.4, 0.6, 0.3] + [0.0, 0.0, 1.0]).round(5)


def write_csv(path: Path, x, columns=("t_ms", "az", "ax", "ay", "note")) -> Path:
    """Columns in another order than the pipeline's, plus ones it ignores."""
    rows = [",".join(columns)]
    for i, (ax, ay, az) in enumerate(x):
        v = {"t_ms": str(i * 10), "ax": str(float(ax)), "ay": str(float(ay)), "az": str(float(az)), "note": "x"}
        rows.append(",".join(v[c] for c in columns))
    path.write_text("\n".join(rows) + "\n")
    return path


def reference_windows(x, scale_in, zp):
    """Slicing by hand: window i = samples [i*stride, i*stride + 64), normalised
    (x - offset) / scale in float32, quantized round-half-away to int8."""
    x = np.asarray(x, dtype=np.float32)
    out = []
    for start in range(0, len(x) - SAMPLES + 1, STRIDE):
        w = (x[start:start + SAMPLES] - np.float32(OFFSET)) / np.float32(SCALE)
        v = w / np.float32(scale_in)
        q = np.clip(np.where(v >= 0, np.floor(v + 0.5), np.ceil(v - 0.5)) + zp, -128, 127)
        out.append(((start + SAMPLES) * 1000 // RATE_HZ, w, q.astype(np.int8)))
    return out


def test_imu_stream_windows_equal_the_reference_slicing(imu_model):
    pipe = resolve(tflite.load(imu_model))
    t = tflite.load(imu_model).input_tensors[0]
    x = samples()
    want = reference_windows(x, t.quant.scale[0], t.quant.zero_point[0])
    assert len(want) == (300 - SAMPLES) // STRIDE + 1
    for chunk in (1, 5, 64, 300):
        s = ImuStream(pipe)
        got = []
        for i in range(0, len(x), chunk):
            got += s.feed(x[i:i + chunk])
        assert [w.t_ms for w in got] == [t for t, _, _ in want]
        for w, (_, norm, q) in zip(got, want):
            assert np.array_equal(w.raw, norm)
            assert np.array_equal(w.tensor, q.reshape(-1))


def test_a_stride_longer_than_the_window_skips_samples():
    m = tflite.load(GESTURE)
    s = ImuStream(resolve(m, imu=["ax", "ay", "az"], rate=RATE_HZ, stride=100))
    x = samples(400)
    got = []
    for i in range(0, 400, 7):
        got += s.feed(x[i:i + 7])
    assert [w.t_ms for w in got] == [(st + SAMPLES) * 10 for st in (0, 100, 200, 300)]
    assert np.array_equal(got[2].raw, np.asarray(x[200:264], dtype=np.float32))


def test_imu_csv_through_the_sim_gives_the_reference_windows(imu_model, tmp_path):
    from tflite_micro.python.tflite_micro import runtime
    x = samples()
    csv = write_csv(tmp_path / "imu.csv", x)
    interp = runtime.Interpreter.from_bytes(GESTURE.read_bytes())
    d = interp.get_input_details(0)
    want = reference_windows(x, d["quantization_parameters"]["scales"][0],
                             d["quantization_parameters"]["zero_points"][0])
    ref_q = []
    for _, _, q in want:
        interp.set_input(q.reshape(d["shape"]), 0)
        interp.invoke()
        ref_q.append([int(v) for v in interp.get_output(0).reshape(-1)])
    r = run_cli(["monitor", "--sim", str(imu_model), "--source", str(csv), "--json", "--fast"],
                timeout=90)
    assert r.exit_code == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    res = [d for d in recs if d["type"] == "res"]
    assert [d["t_ms"] for d in res] == [t for t, _, _ in want]
    assert [d["q"] for d in res] == ref_q
    assert all(d["label"] == GESTURE_LABELS[d["top"]] for d in res)   # names from the model
    hello = next(d for d in recs if d["type"] == "hello")
    assert hello["input"] == "imu"
    assert recs[-1]["exit"] == "end" and recs[-1]["results"] == len(want)


def _wav(path: Path, x, rate=16000, width=2, channels=1) -> Path:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(np.asarray(x).tobytes())
    return path


def test_real_time_takes_the_files_time_and_fast_does_not(tmp_path):
    from nanoml.sim.board import VirtualBoard
    import serial
    model = shared_path("models", "micro_speech_quantized.tflite")
    wav = _wav(tmp_path / "q.wav", np.zeros(32000, dtype="<i2"))         # 2 s
    took = {}
    for fast in (False, True):
        vb = VirtualBoard(model, source=wav, fast=fast).start()
        try:
            with serial.Serial(vb.port, 115200, timeout=0.2) as port:
                t0 = time.monotonic()
                buf = b""
                while b"~nm end " not in buf and time.monotonic() - t0 < 30:
                    buf += port.read(4096)
                took[fast] = time.monotonic() - t0
            assert vb.wait(10), "the sim did not stop at the end of the file"
        finally:
            vb.stop()
        lines = buf.decode().splitlines()
        assert sum(line.startswith("~nm res ") for line in lines) == 11   # 990 .. 1990 ms
    # real time: the last window (1990 ms) is due ~1.99 s after the hello
    assert took[False] >= 1.8
    assert took[True] < took[False] - 0.8


# ---------------------------------------------------------------- bad input


def _one_line_error(r, *parts):
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert err and err[0].startswith("error: ") and len(err) <= 2, r.stderr
    for p in parts:
        assert p in err[0], (p, err[0])


@pytest.mark.parametrize("kind,kw,part", [
    ("rate", {"rate": 8000}, "sample rate 8000 Hz"),
    ("width", {"width": 1}, "8-bit mono"),
    ("channels", {"channels": 2}, "2 channels"),
])
def test_bad_wav_is_one_line_and_writes_no_log(tmp_path, kind, kw, part):
    model = shared_path("models", "micro_speech_quantized.tflite")
    n = 16000 * kw.get("channels", 1)
    data = np.zeros(n, dtype=np.uint8 if kw.get("width") == 1 else "<i2")
    wav = _wav(tmp_path / f"{kind}.wav", data, **kw)
    log = tmp_path / "log.jsonl"
    r = run_cli(["monitor", "--sim", str(model), "--source", str(wav), "--log", str(log)])
    _one_line_error(r, part)
    assert not log.exists()
    _one_line_error(run_cli(["sim", str(model), "--source", str(wav), "--no-link"]), part)


def test_csv_with_a_missing_column_is_one_line(imu_model, tmp_path):
    csv = write_csv(tmp_path / "no_az.csv", samples(100), columns=("t_ms", "ax", "ay"))
    log = tmp_path / "log.csv"
    r = run_cli(["monitor", "--sim", str(imu_model), "--source", str(csv), "--log", str(log)])
    _one_line_error(r, "no column az")
    assert not log.exists()


def test_labels_that_do_not_match_the_outputs_are_one_line(imu_model, tmp_path):
    csv = write_csv(tmp_path / "ok.csv", samples(100))
    r = run_cli(["sim", str(imu_model), "--source", str(csv), "--labels", "a,b", "--no-link"])
    _one_line_error(r, "2 labels for a model with 4 output")


def test_source_must_be_wav_or_csv_and_fast_needs_it(imu_model, tmp_path):
    txt = tmp_path / "x.txt"
    txt.write_text("ax,ay,az\n")
    _one_line_error(run_cli(["monitor", "--sim", str(imu_model), "--source", str(txt)]),
                    "not a .wav")
    _one_line_error(run_cli(["monitor", "--source", str(txt)]), "--source and --fast go with")
    _one_line_error(run_cli(["sim", str(imu_model), "--fast", "--no-link"]), "--fast goes with")


def test_a_sim_that_cannot_start_leaves_no_log(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model at all" * 10)
    log = tmp_path / "run.jsonl"
    r = run_cli(["monitor", "--sim", str(bad), "--log", str(log)])
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert not log.exists()
