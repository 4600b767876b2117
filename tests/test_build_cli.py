"""`nanoml build` on the command line: JSON schema, exit codes, default folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import SHARED
from firmware_helpers import make_model


def _nanoml(*args, cwd: Path, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "nanoml", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def test_build_no_compile_json(tmp_path):
    p = make_model(tmp_path / "wave.tflite", (1, 20, 3), 4)
    r = _nanoml("build", p, "--no-compile", "--input", "imu", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["project_dir"] == str(tmp_path / "wave-firmware")
    assert d["format"] == "platformio" and d["compiled"] is False and d["exit_code"] == 0
    s = d["spec"]
    assert s["board"] == "nano33ble_sense" and s["runtime"] == "chirale_2.0.0"
    assert s["input"] == "imu" and s["rate_hz"] == 100
    assert [o["name"] for o in s["ops"]] == ["FULLY_CONNECTED", "RESHAPE", "SOFTMAX"]
    a = s["arena"]
    assert a["bytes"] % 16 == 0 and a["bytes"] == a["predicted_min_bytes"] + a["margin_bytes"] \
        + (-(a["predicted_min_bytes"] + a["margin_bytes"]) % 16)
    assert s["build_flags"][0] == "-DTF_LITE_STATIC_MEMORY"
    assert "platformio.ini" in d["files"]["written"]
    assert (tmp_path / "wave-firmware" / "src" / "main.cpp").is_file()
    # again: nothing to write
    r = _nanoml("build", p, "--no-compile", "--input", "imu", "--json", cwd=tmp_path)
    assert json.loads(r.stdout)["files"]["written"] == []


def test_build_arduino_default_folder(tmp_path):
    p = make_model(tmp_path / "wave.tflite")
    r = _nanoml("build", p, "--format", "arduino", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["project_dir"] == str(tmp_path / "wave")
    assert (tmp_path / "wave" / "wave.ino").is_file()
    assert d["spec"]["arena"]["static_memory"] is False
    assert d["spec"]["build_flags"] == []


def test_build_errors_are_one_line_with_exit_codes(tmp_path):
    p = make_model(tmp_path / "m.tflite")
    r = _nanoml("build", p, "--no-compile", "--input", "mic", "--board", "nano33ble", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and "hint: " in r.stderr and "Traceback" not in r.stderr
    r = _nanoml("build", tmp_path / "missing.tflite", "--no-compile", "--json", cwd=tmp_path)
    assert r.returncode == 2 and "no such file" in json.loads(r.stdout)["error"]
    r = _nanoml("build", p, "--no-compile", "--format", "zip", cwd=tmp_path)
    assert r.returncode == 2 and "'zip' is not one of 'platformio', 'arduino'" in r.stderr
    assert r.stderr.startswith("error: ") and len(r.stderr.splitlines()) == 2
    r = _nanoml("build", p, "--no-compile", "--arena-margin", "lots", cwd=tmp_path)
    assert r.returncode == 2 and "arena margin" in r.stderr


def test_unsupported_shared_model_is_refused(tmp_path):
    model = SHARED / "models" / "audio_preprocessor_int8.tflite"
    if not model.exists():
        import pytest
        pytest.skip(f"{model} not present (../shared/ is only beside the project checkout)")
    r = _nanoml("build", model, "--no-compile", "--json", cwd=tmp_path)
    assert r.returncode == 2
    assert "SignalWindow" in json.loads(r.stdout)["error"]


def test_text_output_names_the_arena_and_files(tmp_path):
    p = make_model(tmp_path / "m.tflite")
    r = _nanoml("build", p, "--no-compile", "--arena-margin", "10%", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "predicted" in r.stdout and "margin" in r.stdout and "(10%)" in r.stdout
    written = json.loads((tmp_path / "m-firmware" / ".nanoml" / "manifest.json").read_text())
    assert len(written["files"]) >= 14 and "nanoml_flags.py" in written["files"]
    assert f"files: {len(written['files'])} written" in r.stdout


def _toml_build(tmp_path, toml: str, *extra):
    from mutants import run_cli
    (tmp_path / "nanoml.toml").write_text(toml)
    p = make_model(tmp_path / "m.tflite")
    return run_cli(["build", str(p), "--no-compile", "--json", "--out", str(tmp_path / "proj"),
                    *extra], cwd=tmp_path)


def test_misspelt_nanoml_toml_key_is_an_error_naming_the_closest_key(tmp_path):
    (tmp_path / "vendor" / "fw").mkdir(parents=True)
    for toml, bad, good in [('[offline]\nframwork = "vendor/fw"\n', "framwork", "framework"),
                            ('[ofline]\ndir = "vendor"\n', "ofline", "offline"),
                            ('[offline]\ndir = "vendor"\n[offline.packagse]\nx = "vendor"\n',
                             "packagse", "packages")]:
        r = _toml_build(tmp_path, toml)
        assert r.exit_code == 2 and not r.traceback, r.stdout + r.stderr
        err = json.loads(r.stdout)["error"]
        assert f"'{bad}'" in err and f"'{good}'" in err, err
        assert not (tmp_path / "proj").exists()
    r = _toml_build(tmp_path, '[offline]\nlink = 3\n')
    assert r.exit_code == 2 and "must be a string" in json.loads(r.stdout)["error"]


def test_build_reports_only_the_local_packages_it_uses(tmp_path):
    for d in ("chirale", "lsm9ds1"):
        (tmp_path / "vendor" / d).mkdir(parents=True)
    toml = ('[offline.libraries]\nChirale_TensorFLowLite = "vendor/chirale"\n'
            'Arduino_LSM9DS1 = "vendor/lsm9ds1"\n')
    r = _toml_build(tmp_path, toml)                     # --input serial: no IMU library
    assert r.exit_code == 0, r.stdout + r.stderr
    d = json.loads(r.stdout)
    assert list(d["local_packages"]["libraries"]) == ["chirale_tensorflowlite"]
    assert any("Arduino_LSM9DS1" in w and "not used" in w for w in d["spec"]["warnings"])
    assert "lsm9ds1" not in (tmp_path / "proj" / "platformio.ini").read_text()
    r = _toml_build(tmp_path, '[offline.libraries]\nChirale_TensorFLowLit = "vendor/chirale"\n')
    assert r.exit_code == 2 and "'Chirale_TensorFLowLite'" in json.loads(r.stdout)["error"]
