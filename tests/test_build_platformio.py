"""platformio.ini as PlatformIO itself reads it, local package sources for
offline builds, and the PlatformIO runner (usage lines, failure advice,
timeouts)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from firmware_helpers import make_model

from nanoml.boards import all_boards
from nanoml.errors import UsageError
from nanoml.firmware.advice import advise, advise_device
from nanoml.firmware.build import BuildOptions, generate
from nanoml.firmware.offline import lib_dep_name
from nanoml.firmware.pio import parse_usage, pio_command, run_pio
from nanoml.runtimes import all_runtimes


def _config(ini: Path):
    from platformio.project.config import ProjectConfig
    cfg = ProjectConfig(str(ini), parse_extra=True, expand_interpolations=True)
    assert cfg.validate(silent=True)
    lint = ProjectConfig.lint(str(ini))
    assert lint["errors"] == [] and lint["warnings"] == [], lint
    return cfg


@pytest.mark.parametrize("board", sorted(all_boards()))
@pytest.mark.parametrize("runtime", sorted(all_runtimes()))
def test_platformio_ini_is_valid_and_pinned(tmp_path, board, runtime):
    p = make_model(tmp_path / "m.tflite", (1, 16, 3), 4)
    res = generate(BuildOptions(model=p, out=tmp_path / "proj", board=board, runtime=runtime,
                                input="imu", arena=4096))
    cfg = _config(res.project_dir / "platformio.ini")
    b = all_boards()[board]
    rt = all_runtimes()[runtime]
    env = f"env:{board}"
    assert cfg.envs() == [board] and cfg.default_envs() == [board]
    assert cfg.get(env, "platform") == b.platformio["platform"] == "nordicnrf52@10.11.0"
    assert cfg.get(env, "board") == "nano33ble"
    assert cfg.get(env, "framework") == ["arduino"]
    assert cfg.get(env, "upload_protocol") == "sam-ba"
    assert cfg.get(env, "lib_deps") == [rt.lib_deps, b.sensors["imu"]["library"]]
    for dep in cfg.get(env, "lib_deps"):            # pinned: a version or a commit
        assert "@" in dep or "#" in dep, dep
    flags = cfg.get(env, "build_flags")
    assert "-DTF_LITE_STATIC_MEMORY" in flags       # what the arena prediction assumes
    assert cfg.get("platformio", "extra_configs") == ["nanoml_user.ini"]


def test_user_ini_is_read_by_platformio(tmp_path, monkeypatch):
    p = make_model(tmp_path / "m.tflite")
    res = generate(BuildOptions(model=p, out=tmp_path / "proj", arena=4096))
    (res.project_dir / "nanoml_user.ini").write_text(
        "[env:nano33ble_sense]\nupload_port = /dev/ttyACM9\n")
    monkeypatch.chdir(res.project_dir)       # `pio run -d DIR` reads it from DIR
    cfg = _config(res.project_dir / "platformio.ini")
    assert cfg.get("env:nano33ble_sense", "upload_port") == "/dev/ttyACM9"


# ---------------------------------------------------------------------------
# offline: local package sources

def _fake_packages(root: Path) -> Path:
    for d in ("platform-nordicnrf52", "framework-arduino-mbed", "toolchain-gccarmnoneeabi",
              "tool-sreccat", "tool-bossac-nordicnrf52", "libraries/Chirale_TensorFlowLite",
              "libraries/Arduino_LSM9DS1"):
        (root / d).mkdir(parents=True)
    return root


def _platform_packages(cfg, env) -> dict[str, str]:
    """platform_packages as PlatformBase.packages splits them (name @ version/URL)."""
    out = {}
    for item in cfg.get(env, "platform_packages"):
        name, version = item.split("@", 1)
        out[name.strip()] = version.strip()
    return out


def test_packages_dir_is_written_as_local_sources(tmp_path):
    pk = _fake_packages(tmp_path / "pio-offline")
    p = make_model(tmp_path / "m.tflite", (1, 16, 3), 4)
    res = generate(BuildOptions(model=p, out=tmp_path / "proj", input="imu", arena=4096,
                                packages_dir=pk, cwd=tmp_path))
    cfg = _config(res.project_dir / "platformio.ini")
    env = "env:nano33ble_sense"
    assert cfg.get(env, "platform") == f"file://{pk / 'platform-nordicnrf52'}"
    pp = _platform_packages(cfg, env)
    assert pp["framework-arduino-mbed"] == f"file://{pk / 'framework-arduino-mbed'}"
    assert pp["toolchain-gccarmnoneeabi"] == f"file://{pk / 'toolchain-gccarmnoneeabi'}"
    assert pp["tool-bossac-nordicnrf52"].startswith("file://")
    deps = cfg.get(env, "lib_deps")
    assert deps == [f"symlink://{pk / 'libraries/Chirale_TensorFlowLite'}",
                    f"symlink://{pk / 'libraries/Arduino_LSM9DS1'}"]
    from platformio.package.meta import PackageSpec
    for d in deps:
        assert PackageSpec(d).uri == d


def test_nanoml_toml_offline_section(tmp_path):
    pk = _fake_packages(tmp_path / "vendor")
    (tmp_path / "nanoml.toml").write_text(
        '[offline]\n'
        'platform = "vendor/platform-nordicnrf52"\n'
        'framework = "vendor/framework-arduino-mbed"\n'
        'toolchain = "vendor/toolchain-gccarmnoneeabi"\n'
        'link = "file"\n'
        '[offline.libraries]\n'
        'Chirale_TensorFLowLite = "vendor/libraries/Chirale_TensorFlowLite"\n')
    p = make_model(tmp_path / "m.tflite")
    res = generate(BuildOptions(model=p, out=tmp_path / "proj", arena=4096, cwd=tmp_path))
    assert res.local is not None and res.local.source.endswith("nanoml.toml")
    cfg = _config(res.project_dir / "platformio.ini")
    env = "env:nano33ble_sense"
    assert cfg.get(env, "platform") == f"file://{pk / 'platform-nordicnrf52'}"
    assert set(_platform_packages(cfg, env)) == {"framework-arduino-mbed",
                                                 "toolchain-gccarmnoneeabi"}
    assert cfg.get(env, "lib_deps") == [f"file://{pk / 'libraries/Chirale_TensorFlowLite'}"]
    assert "Local package sources" in (res.project_dir / "platformio.ini").read_text()


def test_offline_config_errors(tmp_path):
    p = make_model(tmp_path / "m.tflite")
    (tmp_path / "nanoml.toml").write_text('[offline]\nplatform = "nowhere"\n')
    with pytest.raises(UsageError, match="not found"):
        generate(BuildOptions(model=p, out=tmp_path / "proj", arena=4096, cwd=tmp_path))
    (tmp_path / "nanoml.toml").write_text('[offline\n')
    with pytest.raises(UsageError, match="TOML"):
        generate(BuildOptions(model=p, out=tmp_path / "proj", arena=4096, cwd=tmp_path))


def test_lib_dep_names():
    assert lib_dep_name("spaziochirale/Chirale_TensorFLowLite@2.0.0") == "Chirale_TensorFLowLite"
    assert lib_dep_name("https://github.com/tensorflow/tflite-micro-arduino-examples#7948b85") \
        == "tflite-micro-arduino-examples"
    assert lib_dep_name("arduino-libraries/Arduino_LSM9DS1@1.1.1") == "Arduino_LSM9DS1"


# ---------------------------------------------------------------------------
# runner and advice

# Lines in the formats PlatformIO 6.1 and GNU ld print them.
USAGE_LOG = [
    "Checking size .pio/build/nano33ble_sense/firmware.elf",
    "Advanced Memory Usage is available via \"PlatformIO Home > Project Inspect\"",
    "RAM:   [==        ]  17.0% (used 44552 bytes from 262144 bytes)",
    "Flash: [=         ]   8.7% (used 85328 bytes from 983040 bytes)",
]


def test_parse_usage():
    u = parse_usage(USAGE_LOG)
    assert (u["RAM"].used, u["RAM"].total, u["RAM"].percent) == (44552, 262144, 17.0)
    assert (u["Flash"].used, u["Flash"].total) == (85328, 983040)


def test_advice_for_known_failures():
    b = all_boards()["nano33ble_sense"]
    a = advise(["/opt/ld: .pio/build/x/firmware.elf section `.text' will not fit in region "
                "`FLASH'", "/opt/ld: region `FLASH' overflowed by 41234 bytes",
                "collect2: error: ld returned 1 exit status"], {"board": b})
    assert a.kind == "flash_overflow" and "41,234 bytes too big" in a.message
    a = advise(["/opt/ld: region `RAM' overflowed by 5000 bytes"], {"arena": 250000})
    assert a.kind == "ram_overflow" and "250,000" in a.message and "--arena" in a.hint
    # what `pio run` printed here, offline, on first use (PlatformIO 6.1)
    a = advise(["Processing nano33ble_sense (platform: nordicnrf52@10.11.0; board: nano33ble; "
                "framework: arduino)", "-" * 80,
                "Platform Manager: Installing nordicnrf52 @ 10.11.0", "HTTPClientError: "],
               {"libraries": ["Chirale_TensorFLowLite"]})
    assert a.kind == "network"
    assert a.message == ("PlatformIO needs the network once to download the nordicnrf52 "
                         "platform, the mbed core, the toolchain and Chirale_TensorFLowLite; or "
                         "point nanoml at local packages (see docs)")
    a = advise(["src/main.cpp:14:10: fatal error: Chirale_TensorFlowLite.h: No such file or "
                "directory"])
    assert a.kind == "missing_header" and "Chirale_TensorFlowLite.h" in a.message
    a = advise(["Error: Couldn't find a board on the selected port. Check that you have the "
                "correct port selected."])
    assert a.kind == "no_board" and "double-tap" in a.hint
    a = advise(["could not open port /dev/ttyACM0: [Errno 13] Permission denied: '/dev/ttyACM0'"])
    assert a.kind == "permission" and "dialout" in a.hint
    a = advise(["could not open port /dev/ttyACM0: [Errno 16] Device or resource busy: "
                "'/dev/ttyACM0'"])
    assert a.kind == "port_busy" and "close the other" in a.hint
    a = advise(["something else went wrong", "*** [upload] Error 1"])
    assert a.kind == "failed" and "Error 1" in a.message


def test_advice_for_what_the_board_reports():
    # TFLM's own text (builds with error strings) and the firmware's err codes
    a = advise_device(text="Didn't find op for builtin opcode 'CONV_2D'")
    assert a.kind == "missing_op" and "CONV_2D" in a.message
    a = advise_device(code="ops", msg="SOFTMAX")
    assert a.kind == "missing_op" and "SOFTMAX" in a.message
    a = advise_device(code="alloc", msg="AllocateTensors() failed")
    assert a.kind == "arena_too_small" and "--arena-margin" in a.hint
    assert advise_device(code="sensor", msg="LSM9DS1 did not answer").kind == "sensor"
    assert advise_device(text="hello from the sketch") is None


def test_run_pio_times_out_instead_of_hanging():
    cmd = [sys.executable, "-c",
           "import time; print('Compiling src/main.cpp.o', flush=True); time.sleep(60)"]
    seen = []
    t0 = time.monotonic()
    res = run_pio(cmd, on_line=seen.append, timeout=1.5)
    assert time.monotonic() - t0 < 20
    assert res.timed_out and not res.ok
    assert seen == ["Compiling src/main.cpp.o"]
    assert res.advice.kind == "timeout"


def test_run_pio_reports_usage_of_a_successful_run():
    script = "; ".join(f"print({line!r})" for line in USAGE_LOG)
    res = run_pio([sys.executable, "-c", script], timeout=30)
    assert res.ok and res.advice is None
    assert res.usage["RAM"].used == 44552


def test_pio_command_uses_this_python():
    cmd = pio_command(Path("/p"), targets=["upload"], upload_port="/dev/ttyACM0",
                      environment="nano33ble_sense")
    assert cmd[:3] == [sys.executable, "-m", "platformio"]
    assert cmd[3:] == ["run", "-d", "/p", "-e", "nano33ble_sense", "-t", "upload",
                       "--upload-port", "/dev/ttyACM0"]


@pytest.mark.slow
def test_offline_first_build_gives_the_network_advice(tmp_path):
    """Real PlatformIO, with an empty core folder and an unreachable proxy, so the
    first package download fails whether or not this machine is online."""
    from nanoml.firmware.build import compile_project
    p = make_model(tmp_path / "m.tflite")
    res = generate(BuildOptions(model=p, out=tmp_path / "proj", arena=4096))
    env = {"PLATFORMIO_CORE_DIR": str(tmp_path / "core"), "HTTP_PROXY": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "", "NANOML_NO_PREFLIGHT": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        pio = compile_project(res.project_dir, res.spec, timeout=300)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert not pio.ok
    assert pio.advice.kind == "network", pio.log[-10:]
    assert "Chirale_TensorFLowLite" in pio.advice.message


def test_preflight_fails_fast_when_registry_unreachable(tmp_path, monkeypatch):
    """Platform not installed + registry unreachable (a proxy on a closed local port):
    the network advice comes at once, without a minute of PlatformIO retries."""
    import time
    from nanoml.firmware.build import compile_project
    p = make_model(tmp_path / "m.tflite")
    res = generate(BuildOptions(model=p, out=tmp_path / "proj", arena=4096))
    monkeypatch.setenv("PLATFORMIO_CORE_DIR", str(tmp_path / "core"))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("NANOML_NO_PREFLIGHT", raising=False)
    t = time.monotonic()
    pio = compile_project(res.project_dir, res.spec, timeout=300)
    assert time.monotonic() - t < 10
    assert not pio.ok and pio.advice.kind == "network"
    assert "not installed yet" in pio.log[0] and "127.0.0.1" in pio.log[0]


def test_preflight_skipped_for_installed_or_local_platform(tmp_path, monkeypatch):
    from nanoml.firmware.preflight import offline_reason
    p = make_model(tmp_path / "m.tflite")
    res = generate(BuildOptions(model=p, out=tmp_path / "proj", arena=4096))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NANOML_NO_PREFLIGHT", raising=False)
    core = tmp_path / "core"
    monkeypatch.setenv("PLATFORMIO_CORE_DIR", str(core))
    assert offline_reason(res.project_dir)            # not installed, unreachable
    (core / "platforms" / "nordicnrf52").mkdir(parents=True)
    assert offline_reason(res.project_dir) is None    # installed: let PlatformIO decide
    ini = res.project_dir / "platformio.ini"
    ini.write_text(ini.read_text().replace("platform = nordicnrf52@10.11.0",
                                           "platform = file:///srv/pio/platform-nordicnrf52"))
    (core / "platforms" / "nordicnrf52").rmdir()
    assert offline_reason(res.project_dir) is None    # local package
