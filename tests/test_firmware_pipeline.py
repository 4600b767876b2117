"""Sensor pipelines in the firmware (sketches/firmware/nanoml_window.h,
nanoml_recognizer.h, the mic/imu input templates):

- a host build of the firmware's own windowing, feature-to-tensor conversion and
  recognizer C++, fed the same frames / samples / scores as the Python twins
  (nanoml.pipeline.stream.AudioStream with P2's front end and to_tensor,
  imu.ImuStream, recognizer.Recognizer), gives identical tensors and detections;
- the generated --input mic / --input imu sources compile for the Cortex-M4 with
  the board's flags (the libraries we do not own stubbed by declarations:
  tests/cpp/stubs);
- build renders every pipeline parameter into nanoml_config.h, takes the pipeline
  from the model (store.resolve) and lets its flags override it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware_helpers import ARM_FLAGS, ARM_GXX, have_arm, host_build, make_model

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "tests" / "cpp"
STUBS = CPP / "stubs"
needs_arm = pytest.mark.skipif(not have_arm(), reason="arm-none-eabi-g++ not installed")
TYPES = {"float32": 1, "int8": 9, "uint8": 3, "int16": 7}


# ---------------------------------------------------------------------------
# host build of the firmware's pipeline code

@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    return host_build(tmp_path_factory, "pipe", ("nanoml_window.h", "nanoml_recognizer.h"),
                      (CPP / "pipeline_driver.cpp").read_text(), ("-ffp-contract=off",))


def _run(exe: Path, stdin: str) -> list[str]:
    r = subprocess.run([str(exe)], input=stdin.encode(), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout.decode().splitlines()


def _hex(x) -> str:
    return float(np.float32(x)).hex()


def _windows(lines: list[str], dtype: str):
    out = []
    for line in lines:
        tag, t, *vals = line.split()
        assert tag == "W"
        v = np.array([int(x) for x in vals], dtype=np.int64)
        if dtype == "float32":
            v = v.astype(np.uint32).view(np.float32)
        out.append((int(t), v))
    return out


def _assert_same_windows(want, got, dtype: str) -> None:
    """Python twin windows == the firmware's: times and tensors bit for bit."""
    for w, (t_ms, tensor) in zip(want, got):
        assert t_ms == w.t_ms
        ref = np.asarray(w.tensor).reshape(-1)
        if dtype == "float32":
            assert np.array_equal(tensor.view(np.uint32), ref.astype(np.float32).view(np.uint32))
        else:
            assert np.array_equal(tensor, ref.astype(np.int64))


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    """Noise, silence and tone bursts at 16 kHz (int16), with clipping."""
    rng = np.random.default_rng(seed)
    n = int(16000 * seconds)
    t = np.arange(n) / 16000.0
    x = rng.normal(0, 300, n)
    for start in rng.uniform(0, seconds - 0.4, 4):
        a, b = int(start * 16000), int((start + 0.3) * 16000)
        x[a:b] += rng.uniform(2000, 40000) * np.sin(2 * np.pi * rng.uniform(200, 3000) * t[a:b])
    x[int(0.1 * n):int(0.2 * n)] = 0                      # digital silence
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def _audio_pipeline(dtype: str, scale, zp, stride_ms: int, frames: int = 49, params=None):
    from nanoml.pipeline.spec import (MICRO_SPEECH_FEATURE_SCALE, Pipeline, check_frontend,
                                      conversion_for)
    return Pipeline(source="mic", window={"frames": frames, "stride_ms": stride_ms},
                    tensor=conversion_for(dtype, scale, zp, MICRO_SPEECH_FEATURE_SCALE),
                    frontend=check_frontend("micro_speech", params or {}))


AUDIO_CASES = [
    # dtype, input scale, zero point, stride ms, frames, front-end overrides
    ("int8", 0.10140208899974823, -128, 100, 49, None),    # micro_speech_quantized's input
    ("int8", 0.004, 5, 20, 10, None),                      # saturates at qmax often
    ("uint8", 0.2, 0, 60, 20, {"window_step_ms": 10, "num_channels": 16}),
    ("int16", 0.00390625, -7, 40, 8, {"enable_pcan": False, "scale_shift": 3}),
    ("float32", None, None, 100, 49, None),
]


@pytest.mark.parametrize("case", AUDIO_CASES, ids=[f"{c[0]}-{c[3]}ms" for c in AUDIO_CASES])
def test_audio_windows_equal_the_python_twin(driver, case):
    from nanoml.pipeline.frontend import MicroFrontend
    from nanoml.pipeline.stream import AudioStream
    dtype, scale, zp, stride_ms, frames, params = case
    pipe = _audio_pipeline(dtype, scale, zp, stride_ms, frames, params)
    samples = _speechlike(3.0, seed=len(dtype) + stride_ms)
    # the Python twin, fed in uneven chunks as the board's PDM buffers come
    stream = AudioStream(pipe)
    want = []
    for chunk in np.array_split(samples, 37):
        want.extend(stream.feed(chunk))
    # the firmware's window + conversion, fed the front end's frames
    raw = MicroFrontend(pipe.frontend).process(samples)
    c = pipe.tensor
    head = (f"audio {TYPES[dtype]} {c.multiplier} {c.shift} {c.zero_point} {c.qmin} {c.qmax} "
            f"{_hex(c.feature_scale)} {pipe.frames} {pipe.channels} {pipe.stride_frames} "
            f"{pipe.step_samples} {pipe.window_samples} {int(pipe.sample_rate)} {len(raw)}\n")
    body = "\n".join(" ".join(str(int(v)) for v in row) for row in raw)
    got = _windows(_run(driver, head + body + "\n"), dtype)
    assert len(want) >= 5 and len(got) == len(want)
    _assert_same_windows(want, got, dtype)
    if dtype == "int8" and zp == 5:
        assert any((t == 127).any() for _, t in got)        # the clamp was exercised


def _imu_pipeline(dtype, scale, zp, samples, stride, channels, rate, offset=None, scl=None):
    from nanoml.pipeline.spec import IMU_CHANNELS, Imu, Pipeline, conversion_for
    return Pipeline(source="imu", window={"samples": samples, "stride": stride,
                                          "frames": samples},
                    tensor=conversion_for(dtype, scale, zp, 1.0),
                    imu=Imu(list(IMU_CHANNELS[:channels]), float(rate), offset, scl))


IMU_CASES = [
    # dtype, scale, zp, samples, stride, channels, rate, offset, scale
    ("int8", 0.02, -3, 16, 4, 6, 100, [0.1, -0.2, 0.3, 1.5, -2.5, 0.0],
     [0.5, 2.0, 1.0, 250.0, 250.0, 3.0]),
    ("float32", None, None, 20, 20, 3, 119, [0.01, 0.02, -0.98], None),
    ("uint8", 0.05, 128, 10, 15, 9, 50, None, [1.0] * 6 + [50.0] * 3),   # stride > window
    ("int16", 0.01, 0, 12, 1, 3, 100, None, None),
]


@pytest.mark.parametrize("case", IMU_CASES, ids=[f"{c[0]}-{c[3]}x{c[5]}-s{c[4]}" for c in IMU_CASES])
def test_imu_windows_equal_the_python_twin(driver, case):
    from nanoml.pipeline.imu import ImuStream
    dtype, scale, zp, samples, stride, channels, rate, offset, scl = case
    pipe = _imu_pipeline(dtype, scale, zp, samples, stride, channels, rate, offset, scl)
    rng = np.random.default_rng(samples * stride)
    rows = (rng.normal(0, 1, (157, channels)) * ([2.0] * 3 + [300.0] * 3 + [60.0] * 3)[:channels]
            ).astype(np.float32)
    rows[5, 0] = 40.0                                       # saturates every integer type
    stream = ImuStream(pipe)
    want = []
    for part in np.array_split(rows, 9):
        want.extend(stream.feed(part))
    head = (f"imu {TYPES[dtype]} {_hex(scale or 0.0)} {zp or 0} {samples} {channels} {stride} "
            f"{rate} {int(offset is not None)} {int(scl is not None)} "
            + " ".join(_hex(v) for v in (offset or []) + (scl or [])) + f" {len(rows)}\n")
    body = "\n".join(" ".join(_hex(v) for v in r) for r in rows)
    got = _windows(_run(driver, head + body + "\n"), dtype)
    assert len(want) >= 3 and len(got) == len(want)
    _assert_same_windows(want, got, dtype)


def _score_stream(n: int, labels: int, seed: int):
    """Results with a label that dominates for a while, noise between, uneven times."""
    rng = np.random.default_rng(seed)
    t = 0
    out = []
    hot, left = 0, 0
    for _ in range(n):
        t += int(rng.choice([0, 20, 60, 100, 100, 100, 140, 400]))
        if left == 0:
            hot, left = int(rng.integers(0, labels)), int(rng.integers(3, 25))
        left -= 1
        s = rng.integers(0, 90, labels)
        s[hot] = rng.integers(150, 256)
        out.append((t, [int(v) for v in s]))
    return out


REC_CASES = [
    # average_window_ms, threshold, suppression_ms, minimum_count, labels, ignore
    (1000, 200, 1500, 3, ["silence", "unknown", "yes", "no"], ["silence", "unknown"]),
    (500, 150, 300, 1, ["a", "b", "c"], []),
    (2000, 180, 0, 5, ["x", "y"], ["y"]),
    (300, 0, 100, 2, None, ["0"]),                       # no labels: names are the indices
]


@pytest.mark.parametrize("case", REC_CASES, ids=[f"avg{c[0]}-thr{c[1]}" for c in REC_CASES])
def test_recognizer_equals_the_python_twin(driver, case):
    from nanoml.pipeline.recognizer import Recognizer
    from nanoml.pipeline.spec import Decision
    avg, thr, supp, minc, labels, ignore = case
    n = len(labels) if labels else 5
    d = Decision(average_window_ms=avg, threshold=thr, suppression_ms=supp, minimum_count=minc,
                 ignore=ignore)
    rec = Recognizer(d, labels, n)
    results = _score_stream(600, n, seed=avg + thr)
    want = []
    for t, s in results:
        det = rec.process(s, t)
        if det is not None:
            want.append((det.t_ms, det.index, det.score))
    names = labels or [str(i) for i in range(n)]
    flags = " ".join("1" if names[i] in ignore else "0" for i in range(n))
    stdin = f"rec {avg} {thr} {supp} {minc} {n} {flags} {len(results)}\n" + \
        "\n".join(f"{t} " + " ".join(map(str, s)) for t, s in results) + "\n"
    got = []
    for line in _run(driver, stdin):
        tag, t, i, score = line.split()
        assert tag == "D"
        got.append((int(t), int(i), int(score)))
    assert len(want) >= 3
    assert got == want


def test_scores_equal_the_python_twin(driver):
    from nanoml.pipeline.recognizer import score_u8
    rng = np.random.default_rng(3)
    q8 = [int(v) for v in rng.integers(-128, 128, 40)] + [-128, 127]
    u8 = [int(v) for v in rng.integers(0, 256, 40)]
    f32 = [float(np.float32(v)) for v in rng.uniform(-0.2, 1.2, 60)] + [0.0, 1.0, 0.99609375,
                                                                          -0.0, 0.5]
    q16 = [int(v) for v in rng.integers(-32768, 32768, 40)]
    stdin = (f"score 9 {_hex(1 / 256)} -128 {len(q8)} " + " ".join(map(str, q8)) + "\n"
             f"score 3 {_hex(1 / 256)} 0 {len(u8)} " + " ".join(map(str, u8)) + "\n"
             f"score 1 0 0 {len(f32)} " + " ".join(_hex(v) for v in f32) + "\n"
             f"score 7 {_hex(1 / 32768)} 3 {len(q16)} " + " ".join(map(str, q16)) + "\n")
    got = [[int(v) for v in line.split()[1:]] for line in _run(driver, stdin)]
    assert got[0] == score_u8(q8, [], "int8")
    assert got[1] == score_u8(u8, [], "uint8")
    assert got[2] == score_u8(None, f32, "float32")
    deq = ((np.array(q16, dtype=np.float32) - np.float32(3)) * np.float32(1 / 32768)).tolist()
    assert got[3] == score_u8(q16, deq, "int16")


def test_result_and_detection_lines_parse_with_the_host_protocol(driver):
    from nanoml.serial.protocol import Message, parse_line
    lines = [line for line in _run(driver, "lines\n") if line]
    res, det = (parse_line(line.encode() + b"\n") for line in lines)
    assert isinstance(res, Message) and isinstance(det, Message)
    assert res.type == "res" and res.fields["t_ms"] == 2190 and res.fields["fus"] == 1840
    assert res.fields["drop"] == 7 and res.fields["q"] == [-128, -100, 90, -60]
    assert det.type == "det" and det.fields == {"seq": 12, "i": 2, "label": "yes",
                                                "score": 218, "t_ms": 2190}


# ---------------------------------------------------------------------------
# generated sources: rendering and the Cortex-M4 compile

def _audio_model(tmp_path: Path, dtype: str = "int8") -> Path:
    return make_model(tmp_path / "kws.tflite", (1, 49, 40), 4, dtype=dtype)


def _generate(tmp_path: Path, model: Path, input_source: str, name: str = "proj", **kw):
    from nanoml.firmware.build import BuildOptions, generate
    kw.setdefault("arena", 8192)
    return generate(BuildOptions(model=model, out=tmp_path / name, input=input_source, **kw))


def _config(src: Path) -> dict[str, str]:
    text = (src / "nanoml_config.h").read_text()
    return dict(re.findall(r"constexpr [\w\s*]+?(k\w+)(?:\[\w*\])? = (.*?);", text, re.S))


def test_mic_config_renders_every_frontend_parameter(tmp_path):
    from nanoml.pipeline.spec import MICRO_SPEECH
    labels = ["silence", "unknown", "yes", "no"]
    over = {"frontend": "micro_speech", "labels": labels, "stride_ms": 60,
            "frontend_params": {"num_channels": 40, "pcan_offset": 75.5, "smoothing_bits": 9,
                                "enable_log": True, "upper_band_limit": 7000.0}}
    res = _generate(tmp_path, _audio_model(tmp_path), "mic", pipeline=over)
    src = res.project_dir / "src"
    cfg = _config(src)
    names = {"sample_rate": "kFeSampleRate", "window_size_ms": "kFeWindowSizeMs",
             "window_step_ms": "kFeWindowStepMs", "num_channels": "kFeNumChannels",
             "upper_band_limit": "kFeUpperBandLimit", "lower_band_limit": "kFeLowerBandLimit",
             "smoothing_bits": "kFeSmoothingBits", "even_smoothing": "kFeEvenSmoothing",
             "odd_smoothing": "kFeOddSmoothing", "min_signal_remaining": "kFeMinSignalRemaining",
             "enable_pcan": "kFeEnablePcan", "pcan_strength": "kFePcanStrength",
             "pcan_offset": "kFePcanOffset", "gain_bits": "kFeGainBits",
             "enable_log": "kFeEnableLog", "scale_shift": "kFeScaleShift",
             "out_scale": "kFeOutScale"}
    assert set(names) == set(MICRO_SPEECH)
    p = res.spec.pipeline.frontend.params
    assert p["pcan_offset"] == 75.5 and p["smoothing_bits"] == 9
    for key, const in names.items():
        v = cfg[const].rstrip("f")
        assert np.float32(float(v)) == np.float32(float(p[key])), key
    conv = res.spec.pipeline.tensor
    assert int(cfg["kConvMultiplier"]) == conv.multiplier
    assert int(cfg["kConvZeroPoint"]) == conv.zero_point
    assert int(cfg["kFrames"]) == 49 and int(cfg["kChannels"]) == 40
    assert int(cfg["kStride"]) == 3                      # 60 ms / 20 ms steps
    assert int(cfg["kFeStepSamples"]) == 320 and int(cfg["kFeWindowSamples"]) == 480
    assert re.findall(r'"(\w+)"', cfg["kLabelNames"]) == labels
    assert cfg["kIgnoreLabel"].replace(" ", "") == "{1,1,0,0}"
    main = (src / "main.cpp").read_text()
    config_h = (src / "nanoml_config.h").read_text()
    assert "#define NANOML_PIPELINE 1" in config_h and "#define NANOML_DECISION 1" in config_h
    assert "encode_det" in main and (src / "nanoml_window.h").is_file()
    assert res.spec.to_json()["pipeline"]["frontend"]["params"]["pcan_offset"] == 75.5


def test_build_takes_the_pipeline_stored_in_the_model(tmp_path):
    from nanoml.model.tflite import load
    from nanoml.pipeline import store
    model = _audio_model(tmp_path)
    pipe = store.resolve(load(model), frontend="micro_speech", labels=["a", "b", "c", "d"],
                         stride_ms=200)
    stored = tmp_path / "stored.tflite"
    stored.write_bytes(store.write_pipeline(model.read_bytes(), pipe))
    res = _generate(tmp_path, stored, "mic")
    cfg = _config(res.project_dir / "src")
    assert int(cfg["kStride"]) == 10 and re.findall(r'"(\w+)"', cfg["kLabelNames"]) == list("abcd")
    # a flag overrides the stored description
    res2 = _generate(tmp_path, stored, "mic", name="p2", pipeline={"stride_ms": 40,
                                                                    "decision": False})
    cfg2 = _config(res2.project_dir / "src")
    assert int(cfg2["kStride"]) == 2 and "kDetectionThreshold" not in cfg2
    assert "#define NANOML_DECISION 0" in (res2.project_dir / "src" / "nanoml_config.h").read_text()


def test_model_without_a_pipeline_keeps_raw_samples(tmp_path):
    res = _generate(tmp_path, make_model(tmp_path / "m.tflite", (1, 1600), 4), "mic")
    src = res.project_dir / "src"
    assert res.spec.pipeline is None
    assert "#define NANOML_PIPELINE 0" in (src / "nanoml_config.h").read_text()
    assert "FrontendProcessSamples" not in (src / "nanoml_input.cpp").read_text()
    assert not (src / "nanoml_window.h").exists()


def test_pipeline_mismatches_are_one_line_errors(tmp_path):
    from nanoml.errors import NanomlError
    model = _audio_model(tmp_path)
    with pytest.raises(NanomlError, match="--rate 41667 differs"):
        _generate(tmp_path, model, "mic", pipeline={"frontend": "micro_speech"}, rate_hz=41667)
    with pytest.raises(NanomlError, match="apply to --input mic or imu"):
        _generate(tmp_path, model, "serial", pipeline={"frontend": "micro_speech"})
    imu_model = make_model(tmp_path / "imu.tflite", (1, 16, 3), 4)
    from nanoml.model.tflite import load
    from nanoml.pipeline import store
    pipe = store.resolve(load(imu_model), imu=["ax", "ay", "az"], rate=100)
    stored = tmp_path / "imu_stored.tflite"
    stored.write_bytes(store.write_pipeline(imu_model.read_bytes(), pipe))
    with pytest.raises(NanomlError, match="has a imu pipeline"):
        _generate(tmp_path, stored, "mic")


def test_build_cli_flags_reach_the_config(tmp_path):
    from nanoml.cli import app
    from typer.testing import CliRunner
    model = _audio_model(tmp_path)
    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["build", str(model), "--input", "mic", "--no-compile",
                                 "--frontend", "micro_speech", "--labels", "s,u,yes,no",
                                 "--stride-ms", "80", "--threshold", "180", "--out", str(out),
                                 "--arena", "8192"])
    assert r.exit_code == 0, r.output
    cfg = _config(out / "src")
    assert int(cfg["kStride"]) == 4 and int(cfg["kDetectionThreshold"]) == 180


def _arm(src: Path, name: str, out: Path) -> None:
    r = subprocess.run([ARM_GXX, *ARM_FLAGS, f"-I{STUBS}", "-c", name, "-o", str(out)],
                       capture_output=True, text=True, cwd=src)
    assert r.returncode == 0, f"{name} does not compile for Cortex-M4:\n{r.stderr}"


def _undefined(obj: Path) -> set[str]:
    out = subprocess.run(["arm-none-eabi-nm", "-u", "-C", str(obj)], capture_output=True,
                         text=True, check=True).stdout
    return {line.split(None, 1)[-1].strip() for line in out.splitlines() if line.strip()}


@needs_arm
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_mic_pipeline_sources_compile_for_cortex_m4(tmp_path, dtype):
    res = _generate(tmp_path, _audio_model(tmp_path, dtype), "mic",
                    pipeline={"frontend": "micro_speech", "labels": ["s", "u", "y", "n"]})
    src = res.project_dir / "src"
    obj = tmp_path / "input.o"
    _arm(src, "nanoml_input.cpp", obj)
    undefined = _undefined(obj)
    for sym in ("FrontendProcessSamples", "FrontendPopulateState", "FrontendFillConfigWithDefaults"):
        assert any(sym in u for u in undefined), (sym, undefined)
    assert not any("malloc" in u or "printf" in u for u in undefined), undefined
    for name in ("nanoml_window.h", "nanoml_recognizer.h", "nanoml_config.h"):
        probe = src / f"probe_{name}.cpp"
        probe.write_text(f'#include "nanoml_app.h"\n#include "{name}"\n')
        _arm(src, probe.name, tmp_path / f"{name}.o")


@needs_arm
@pytest.mark.parametrize("board", ["nano33ble_sense", "nano33ble_sense_rev2"])
def test_imu_pipeline_sources_compile_for_cortex_m4(tmp_path, board):
    model = make_model(tmp_path / "imu.tflite", (1, 16, 6), 4)
    res = _generate(tmp_path, model, "imu", board=board,
                    pipeline={"imu": ["ax", "ay", "az", "gx", "gy", "gz"], "stride": 4,
                              "rate": 100, "offset": [0.0] * 6, "scale": [1.0] * 3 + [250.0] * 3})
    src = res.project_dir / "src"
    cfg = _config(src)
    assert int(cfg["kStride"]) == 4 and cfg["kScale"].count("250.0f") == 3
    obj = tmp_path / "imu.o"
    _arm(src, "nanoml_input.cpp", obj)
    assert any("readGyroscope" in u for u in _undefined(obj))
