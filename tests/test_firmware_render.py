"""Generated projects: the op resolver holds exactly the model's ops, the arena
is the prediction plus the margin, a model swap changes only the model's
translation unit, and re-running updates the folder in place without
clobbering the user's files."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from conftest import EXAMPLES, SHARED, shared_model_names
from firmware_helpers import make_model

from nanoml.errors import UsageError
from nanoml.firmware.arena import parse_margin, parse_size, round_up
from nanoml.firmware.build import BuildOptions, generate
from nanoml.model.tflite import load
from nanoml.runtimes import all_runtimes, get_runtime

RESOLVER_RE = re.compile(r"tflite::MicroMutableOpResolver<(\d+)>")
ADD_RE = re.compile(r"r->(Add\w+)\(\)")
ARENA_RE = re.compile(r"alignas\(16\) uint8_t g_tensor_arena\[(\d+)\];")


def _gen(tmp_path: Path, model: Path, sub: str = "proj", **kw):
    kw.setdefault("arena", 8192)
    return generate(BuildOptions(model=model, out=tmp_path / sub, **kw))


def _src(res, name: str) -> str:
    base = res.project_dir / ("src" if res.spec.fmt == "platformio" else "")
    return (base / name).read_text()


def _expected_resolvers(model_path: Path, runtime_id: str | None = None) -> list[str]:
    rt = get_runtime(runtime_id)
    m = load(model_path)
    names = set()
    for op in m.operators:
        names.add(rt.custom_ops[op.custom_code] if op.op == "CUSTOM" else rt.ops[op.op].resolver)
    return sorted(names)


def _check_resolver(res, model_path: Path, runtime_id: str | None = None) -> None:
    text = _src(res, "nanoml_ops.cpp")
    n = int(RESOLVER_RE.search(text).group(1))
    calls = ADD_RE.findall(text)
    want = _expected_resolvers(model_path, runtime_id)
    assert sorted(calls) == want                 # exactly the model's ops, once each
    assert n == len(want)                        # N = their count
    assert "AllOpsResolver" not in text and "all_ops_resolver" not in text
    main = _src(res, "main.cpp" if res.spec.fmt == "platformio" else f"{res.project_dir.name}.ino")
    assert "AllOpsResolver" not in main


@pytest.mark.parametrize("runtime_id", sorted(all_runtimes()))
def test_resolver_holds_exactly_the_models_ops(tmp_path, runtime_id):
    p = make_model(tmp_path / "m.tflite", (1, 8, 3), 4)
    res = _gen(tmp_path, p, runtime=runtime_id)
    _check_resolver(res, p, runtime_id)
    assert sorted(o.name for o in res.spec.ops) == ["FULLY_CONNECTED", "RESHAPE", "SOFTMAX"]
    # the execution order goes into the model's translation unit (hello line)
    ops = re.findall(r'^    "([A-Z_0-9]+)",$', _src(res, "model_data.cpp"), re.M)
    assert ops == ["RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]


# what ../shared/README.md says a build must refuse, and why (a word of the message)
REFUSED = {"audio_preprocessor_int8.tflite": "Signal",
           "mobilenet_v2_quantized_1x3x224x224.tflite": "flash"}


@pytest.mark.parametrize("name", shared_model_names())
def test_shared_models_render(tmp_path, name):
    model = SHARED / "models" / name
    if name in REFUSED:
        with pytest.raises(UsageError, match=REFUSED[name]):
            _gen(tmp_path, model, input="synthetic")
        assert not (tmp_path / "proj").exists() or not any((tmp_path / "proj").iterdir())
    else:
        res = _gen(tmp_path, model, input="synthetic")
        _check_resolver(res, model)
        text = _src(res, "model_data.cpp")
        assert f"const unsigned int g_model_len = {model.stat().st_size};" in text
        assert f'g_model_sha256[] = "{load(model).sha256[:12]}"' in text


def test_example_model_renders_for_imu(tmp_path):
    model = EXAMPLES / "gesture" / "gesture_int8.tflite"
    if not model.exists():
        pytest.skip("examples/gesture not in this checkout")
    res = _gen(tmp_path, model, input="imu")
    _check_resolver(res, model)
    assert res.spec.imu["channels"] == 3 and res.spec.imu["window"] == 64
    assert "Arduino_LSM9DS1.h" in _src(res, "nanoml_input.cpp")


def test_model_array_is_the_file(tmp_path):
    p = make_model(tmp_path / "m.tflite", (1, 4), 3)
    res = _gen(tmp_path, p)
    text = _src(res, "model_data.cpp")
    body = text.split("g_model[] = {", 1)[1].split("};", 1)[0]
    data = bytes(int(x, 16) for x in re.findall(r"0x([0-9a-f]{2})", body))
    assert data == p.read_bytes()
    assert "alignas(16) const unsigned char g_model[]" in text
    # the header is fixed: it declares, never sizes
    header = _src(res, "model_data.h")
    assert "extern const unsigned char g_model[];" in header
    assert "extern const unsigned int g_model_len;" in header
    assert str(p.stat().st_size) not in header


# ---------------------------------------------------------------------------
# arena

def _predict(model_path: Path, runtime_id: str, static_memory: bool) -> int:
    from nanoml.memory import predict_arena
    return predict_arena(load(model_path), runtime_id=runtime_id,
                         static_memory=static_memory).min_bytes


@pytest.mark.parametrize("margin", [None, "0", "2048", "3K", "10%"])
def test_arena_is_prediction_plus_margin(tmp_path, margin):
    p = make_model(tmp_path / "m.tflite", (1, 16, 6), 5)
    rt = get_runtime(None)
    predicted = _predict(p, rt.id, rt.static_memory)
    res = generate(BuildOptions(model=p, out=tmp_path / "proj", arena_margin=margin))
    m, _ = parse_margin(margin, predicted)
    want = round_up(predicted + m)
    assert int(ARENA_RE.search(_src(res, "nanoml_buffers.cpp")).group(1)) == want
    assert res.spec.arena.size == want and res.spec.arena.predicted == predicted
    if margin is None:
        assert m == 1024


@pytest.mark.parametrize("name", [n for n in shared_model_names() if n not in REFUSED])
def test_shared_model_arena(tmp_path, name):
    model = SHARED / "models" / name
    rt = get_runtime(None)
    res = generate(BuildOptions(model=model, out=tmp_path / "proj", input="synthetic"))
    predicted = _predict(model, rt.id, rt.static_memory)
    assert int(ARENA_RE.search(_src(res, "nanoml_buffers.cpp")).group(1)) == \
        round_up(predicted + 1024)


def test_arduino_format_sizes_arena_without_static_memory(tmp_path):
    p = make_model(tmp_path / "m.tflite", (1, 16, 6), 5)
    rt = get_runtime(None)
    predicted = _predict(p, rt.id, False)
    res = generate(BuildOptions(model=p, out=tmp_path / "my_sketch", fmt="arduino"))
    assert res.spec.arena.static_memory is False
    assert res.spec.arena.size == round_up(predicted + 1024)
    assert any("TF_LITE_STATIC_MEMORY" in w for w in res.spec.warnings)


def test_forced_arena_and_sizes():
    assert parse_size("20K") == 20480 and parse_size("1KiB") == 1024 and parse_size(300) == 300
    assert parse_margin("10%", 1000) == (100, "10%")
    assert parse_margin("512", 1000) == (512, "512 B")
    with pytest.raises(UsageError):
        parse_size("lots")


def test_forced_arena_is_rounded(tmp_path):
    p = make_model(tmp_path / "m.tflite")
    res = _gen(tmp_path, p, arena="5000")
    assert res.spec.arena.forced and res.spec.arena.size == 5008
    assert int(ARENA_RE.search(_src(res, "nanoml_buffers.cpp")).group(1)) == 5008


# ---------------------------------------------------------------------------
# inputs

def test_input_checks(tmp_path):
    one_ch = make_model(tmp_path / "one.tflite", (1, 16, 1), 3)
    six = make_model(tmp_path / "six.tflite", (1, 20, 6), 3, seed=1)
    with pytest.raises(UsageError, match="3, 6 or 9 channels"):
        _gen(tmp_path, one_ch, input="imu")
    with pytest.raises(UsageError, match="no microphone"):
        _gen(tmp_path, six, input="mic", board="nano33ble")
    with pytest.raises(UsageError, match="119 Hz"):
        _gen(tmp_path, six, input="imu", rate_hz=200)
    with pytest.raises(UsageError, match="100 Hz"):
        _gen(tmp_path, six, input="imu", rate_hz=119, board="nano33ble_sense_rev2")
    with pytest.raises(UsageError, match="unknown input"):
        _gen(tmp_path, six, input="camera")
    res = _gen(tmp_path, six, input="imu", board="nano33ble_sense_rev2")
    assert res.spec.imu["channels"] == 6 and res.spec.imu["window"] == 20
    assert "Arduino_BMI270_BMM150.h" in _src(res, "nanoml_input.cpp")
    assert "arduino-libraries/Arduino_BMI270_BMM150@1.2.1" in res.spec.lib_deps
    mic = _gen(tmp_path, six, "mic", input="mic")
    assert "PDM.begin(1" in _src(mic, "nanoml_input.cpp")
    assert "kSampleRateHz = 16000" in _src(mic, "nanoml_config.h")
    assert len(mic.spec.lib_deps) == 1          # PDM comes with the core


def test_serial_and_synthetic_have_no_sensor_files(tmp_path):
    p = make_model(tmp_path / "m.tflite")
    for source in ("serial", "synthetic"):
        res = _gen(tmp_path, p, source, input=source)
        names = {f.name for f in (res.project_dir / "src").iterdir()}
        assert "nanoml_input.cpp" not in names and "nanoml_profiler.h" not in names
        assert f"#define NANOML_INPUT_{source.upper()} 1" in _src(res, "nanoml_config.h")


def test_serial_wait_is_bounded(tmp_path):
    res = _gen(tmp_path, make_model(tmp_path / "m.tflite"))
    main = _src(res, "main.cpp")
    assert not re.search(r"while\s*\(\s*!\s*Serial\s*\)\s*;", main)
    assert re.search(r"while \(!Serial && \(millis\(\) - start\) < nanoml::config::kSerialWaitMs\)",
                     main)


def test_profile_flag(tmp_path):
    p = make_model(tmp_path / "m.tflite")
    res = _gen(tmp_path, p, profile=True)
    assert "#define NANOML_PROFILE 1" in _src(res, "nanoml_config.h")
    assert (res.project_dir / "src" / "nanoml_profiler.h").is_file()
    assert (res.project_dir / "src" / "nanoml_arena_probe.h").is_file()
    assert "return true;" in _src(res, "nanoml_ops.cpp").split("arena_probe_safe()")[1]
    # the profiler hook needs TFLM's error strings: not stripped in this build
    assert "-DTF_LITE_STRIP_ERROR_STRINGS" not in res.spec.build_flags
    plain = _gen(tmp_path, p, "plain")
    assert "-DTF_LITE_STRIP_ERROR_STRINGS" in plain.spec.build_flags


# ---------------------------------------------------------------------------
# in-place updates

def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_rerun_rewrites_nothing(tmp_path):
    p = make_model(tmp_path / "m.tflite")
    res = _gen(tmp_path, p)
    before = _mtimes(res.project_dir)
    time.sleep(0.02)
    again = _gen(tmp_path, p)
    assert again.files.written == [] and again.files.removed == []
    assert _mtimes(res.project_dir) == before


def test_model_swap_changes_only_the_model_unit(tmp_path):
    a = make_model(tmp_path / "a.tflite", (1, 12, 3), 4, seed=1)
    b = make_model(tmp_path / "b.tflite", (1, 12, 3), 4, seed=2)   # same ops and shapes
    first = generate(BuildOptions(model=a, out=tmp_path / "proj", arena=4096))
    second = generate(BuildOptions(model=b, out=tmp_path / "proj", arena=4096))
    assert first.files.written and second.files.written == ["src/model_data.cpp"]
    # a model with other ops: the resolver unit changes too, and the kernels' flags
    # (nanoml_flags.py: only those files' compile lines change), main.cpp never
    c = make_model(tmp_path / "c.tflite", (1, 12, 3), 4, softmax=False)
    third = generate(BuildOptions(model=c, out=tmp_path / "proj", arena=4096))
    assert {"src/model_data.cpp", "src/nanoml_ops.cpp"} <= set(third.files.written) <= {
        "src/model_data.cpp", "src/nanoml_ops.cpp", "src/nanoml_buffers.cpp", "nanoml_flags.py"}


def test_user_files_are_never_touched(tmp_path):
    p = make_model(tmp_path / "m.tflite")
    res = _gen(tmp_path, p)
    root = res.project_dir
    (root / "src" / "my_code.cpp").write_text("// mine\n")
    (root / "nanoml_user.ini").write_text("[env:nano33ble_sense]\nupload_port = /dev/ttyACM7\n")
    _gen(tmp_path, p, input="synthetic")
    assert (root / "src" / "my_code.cpp").read_text() == "// mine\n"
    assert "ttyACM7" in (root / "nanoml_user.ini").read_text()


def test_edited_owned_file_stops_the_build(tmp_path):
    p = make_model(tmp_path / "m.tflite")
    res = _gen(tmp_path, p)
    main = res.project_dir / "src" / "main.cpp"
    main.write_text(main.read_text() + "\n// my change\n")
    # same content wanted: the edit is kept, no error
    _gen(tmp_path, p)
    assert "// my change" in main.read_text()
    # a change nanoml must make to that file: stop and say so
    with pytest.raises(UsageError, match="edited since nanoml wrote it"):
        _gen(tmp_path, p, input="synthetic")
    res = _gen(tmp_path, p, input="synthetic", force=True)
    assert "// my change" not in main.read_text()


def test_foreign_folder_is_not_taken_over(tmp_path):
    out = tmp_path / "proj"
    (out / "src").mkdir(parents=True)
    (out / "platformio.ini").write_text("[env:x]\nplatform = atmelavr\n")
    with pytest.raises(UsageError, match="not written by nanoml"):
        generate(BuildOptions(model=make_model(tmp_path / "m.tflite"), out=out, arena=4096))
    assert "atmelavr" in (out / "platformio.ini").read_text()


def test_stale_generated_files_are_removed(tmp_path):
    p = make_model(tmp_path / "m.tflite", (1, 10, 3), 3)
    res = _gen(tmp_path, p, input="imu", profile=True)
    src = res.project_dir / "src"
    assert (src / "nanoml_input.cpp").is_file() and (src / "nanoml_profiler.h").is_file()
    again = _gen(tmp_path, p, input="serial")
    assert set(again.files.removed) == {"src/nanoml_input.cpp", "src/nanoml_input.h",
                                        "src/nanoml_profiler.h", "src/nanoml_arena_probe.h"}
    assert not (src / "nanoml_input.cpp").exists()


# ---------------------------------------------------------------------------
# Arduino sketch format

def test_arduino_sketch_layout(tmp_path):
    p = make_model(tmp_path / "m.tflite", (1, 10, 3), 3)
    res = _gen(tmp_path, p, "gestures", fmt="arduino", input="imu")
    root = res.project_dir
    assert (root / "gestures.ino").is_file()
    assert not (root / "platformio.ini").exists() and not (root / "main.cpp").exists()
    for f in ("model_data.cpp", "model_data.h", "nanoml_ops.cpp", "nanoml_buffers.cpp",
              "nanoml_app.cpp", "nanoml_protocol.h", "nanoml_input.cpp"):
        assert (root / f).is_file(), f
    ino = (root / "gestures.ino").read_text()
    assert "arduino-cli compile -b arduino:mbed_nano:nano33ble gestures" in ino
    assert 'arduino-cli lib install "Chirale_TensorFLowLite@2.0.0"' in ino
    assert 'arduino-cli lib install "Arduino_LSM9DS1@1.1.1"' in ino
    _check_resolver(res, p)
    with pytest.raises(UsageError, match="sketch name"):
        _gen(tmp_path, p, "bad name!", fmt="arduino")


def test_arena_measured_on_the_board_is_preferred(tmp_path):
    """`nanoml profile` records the board's real minimum in <project>/.nanoml/arena.json;
    the next build of the same model and runtime uses it (device figures only)."""
    from nanoml.profile.record import record_arena
    p = make_model(tmp_path / "m.tflite", (1, 16, 6), 5)
    out = tmp_path / "proj"
    m = load(p)
    record_arena(out, m.sha256, "chirale_2.0.0", "nano33ble_sense", 3000, 2900, "sim")
    res = generate(BuildOptions(model=p, out=out))
    assert res.spec.arena.measured is None          # the virtual board's figure is not used
    record_arena(out, m.sha256, "chirale_2.0.0", "nano33ble_sense", 3000, 2900, "device")
    res = generate(BuildOptions(model=p, out=out))
    assert res.spec.arena.measured == 3000 and res.spec.arena.size == round_up(3000 + 1024)
    assert int(ARENA_RE.search(_src(res, "nanoml_buffers.cpp")).group(1)) == 4032
    other = make_model(tmp_path / "o.tflite", (1, 16, 6), 5, seed=9)   # another model: ignored
    assert generate(BuildOptions(model=other, out=out)).spec.arena.measured is None
    assert generate(BuildOptions(model=p, out=out, arena=8000)).spec.arena.size == 8000


def test_no_arena_bisection_for_lstm_models(tmp_path):
    model = SHARED / "models" / "trained_lstm_int8.tflite"
    if not model.exists():
        pytest.skip(f"{model} not present (../shared/ is only beside the project checkout)")
    res = _gen(tmp_path, model, input="synthetic", profile=True)
    body = _src(res, "nanoml_ops.cpp").split("arena_probe_safe()")[1]
    assert "return false;" in body and "UNIDIRECTIONAL_SEQUENCE_LSTM" in body
    assert any("not bisected" in w for w in res.spec.warnings)


def test_arduino_header_git_library_install_is_a_valid_command(tmp_path):
    """A library that is not in the library manager is installed with the documented
    `arduino-cli lib install --git-url URL#REF`, after enabling unsafe installs."""
    rt = get_runtime("arduino_tflite_2023")
    p = make_model(tmp_path / "m.tflite", (1, 10, 3), 3)
    res = _gen(tmp_path, p, "wand", fmt="arduino", runtime=rt.id, input="imu")
    ino = (res.project_dir / "wand.ino").read_text()
    cmds = [ln[len("//   "):] for ln in ino.splitlines() if ln.startswith("//   arduino-cli ")]
    url, ref = rt.lib_deps.split("#")
    assert cmds == ["arduino-cli core install arduino:mbed_nano",
                    "arduino-cli config set library.enable_unsafe_install true",
                    f"arduino-cli lib install --git-url {url}.git#{ref}",
                    'arduino-cli lib install "Arduino_LSM9DS1@1.1.1"',
                    "arduino-cli compile -b arduino:mbed_nano:nano33ble wand"]
    assert "(from " not in ino and len(ref) == 40


@pytest.mark.parametrize("min_bytes", ["NaN", "-5", '"4096"', "1e40", str(10 ** 40), "true",
                                       "1.5", "null", "[]"])
def test_tampered_arena_record_is_ignored_with_a_warning(tmp_path, min_bytes):
    """.nanoml/arena.json comes with the folder: a figure that is no byte count is
    never rendered; the build says it ignored it and uses the prediction."""
    p = make_model(tmp_path / "m.tflite", (1, 16, 6), 5)
    out = tmp_path / "proj"
    (out / ".nanoml").mkdir(parents=True)
    (out / ".nanoml" / "arena.json").write_text(
        f'{{"model_sha256": "{load(p).sha256}", "runtime": "chirale_2.0.0", '
        f'"board": "nano33ble_sense", "min_bytes": {min_bytes}, "source": "device"}}')
    res = generate(BuildOptions(model=p, out=out))
    a = res.spec.arena
    assert a.measured is None and a.size == round_up(a.predicted + 1024)
    assert int(ARENA_RE.search(_src(res, "nanoml_buffers.cpp")).group(1)) == a.size
    assert any("ignored" in w and "arena.json" in w for w in res.spec.warnings)


@pytest.mark.parametrize("source", ["--arena", "--arena-margin", "arena.json", "predicted"])
def test_arena_that_does_not_fit_the_board_is_refused(tmp_path, source):
    p = make_model(tmp_path / "m.tflite", (1, 16, 6), 5)
    out = tmp_path / "proj"
    kw = {}
    if source == "--arena":
        kw["arena"] = "300K"
    elif source == "--arena-margin":
        kw["arena_margin"] = "250K"
    elif source == "arena.json":
        from nanoml.profile.record import record_arena
        record_arena(out, load(p).sha256, "chirale_2.0.0", "nano33ble_sense", 250_000, None,
                     "device")
    else:   # an activation of 240,000 int8 values: the arena alone exceeds the RAM
        p = make_model(tmp_path / "big.tflite", (1, 240_000), 1, softmax=False, reshape=False)
    with pytest.raises(UsageError, match="does not fit the 262,144 B of RAM") as e:
        generate(BuildOptions(model=p, out=out, **kw))
    assert e.value.hint
    assert not (out / "src").exists()


@pytest.mark.parametrize("arena", ["6" + "0" * 37, str(2 ** 32), "4294967296K"])
def test_absurd_arena_is_refused(tmp_path, arena):
    p = make_model(tmp_path / "m.tflite")
    with pytest.raises(UsageError, match="not a plausible arena size|does not fit"):
        generate(BuildOptions(model=p, out=tmp_path / "proj", arena=arena))
    assert not (tmp_path / "proj").exists()
