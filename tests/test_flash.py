"""`nanoml flash`: which port, which upload command, which errors.

No board can be had here: the port logic runs against fake port listings and
pseudo terminals (os.openpty), and the upload command is checked against
PlatformIO's board manifest for nano33ble instead of being run. The upload
itself (PlatformIO + bossac + a board) is not exercised by these tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from firmware_helpers import make_model

from nanoml.boards import all_boards, get_board
from nanoml.errors import BoardNotFound, NanomlError, UsageError
from nanoml.firmware.build import BuildOptions, generate
from nanoml.firmware.upload import (FlashOptions, check_port_access, find_upload_port, flash,
                                    resolve_project, upload_command)

# PlatformIO's board manifest for nano33ble, the relevant part copied verbatim.
# Source: github.com/platformio/platform-nordicnrf52, tag v10.11.0 (commit 2f3649d),
# boards/nano33ble.json (read with the `fetch` tool; the registry is not reachable here).
NANO33BLE_MANIFEST = {
    "build": {"hwids": [["0x2341", "0x005a"], ["0x2341", "0x805a"]],
              "mcu": "nrf52840", "variant": "ARDUINO_NANO33BLE"},
    "upload": {
        "maximum_ram_size": 262144,
        "maximum_size": 983040,
        "protocol": "sam-ba",
        "protocols": ["jlink", "nrfutil", "nrfjprog", "cmsis-dap", "sam-ba", "blackmagic"],
        "use_1200bps_touch": True,
        "require_upload_port": True,
        "wait_for_upload_port": True,
    },
}


def _ports(*entries):
    return [SimpleNamespace(device=d, vid=v, pid=p, serial_number=sn, description="Nano",
                            location=None) for d, v, p, sn in entries]


APP = (0x2341, 0x805A)
BOOT = (0x2341, 0x005A)


# ---------------------------------------------------------------------------
# manifest facts

@pytest.mark.parametrize("board_id", sorted(all_boards()))
def test_board_profiles_agree_with_the_manifest(board_id):
    b = get_board(board_id)
    up = b.raw["upload"]
    m = NANO33BLE_MANIFEST["upload"]
    assert b.platformio["board"] == "nano33ble"
    for key in ("protocol", "use_1200bps_touch", "wait_for_upload_port", "require_upload_port",
                "maximum_size", "maximum_ram_size"):
        assert up[key] == m[key], key
    assert b.platformio["upload_protocol"] == m["protocol"]
    hwids = {f"{int(v, 16):04X}:{int(p, 16):04X}" for v, p in NANO33BLE_MANIFEST["build"]["hwids"]}
    assert set(up["hwids"]) == hwids == {b.usb_application, b.usb_bootloader}
    assert b.flash_bytes == m["maximum_size"] and b.ram_bytes == m["maximum_ram_size"]


def test_upload_command_follows_the_manifest(tmp_path):
    p = make_model(tmp_path / "m.tflite")
    res = generate(BuildOptions(model=p, out=tmp_path / "proj", arena=4096))
    from platformio.project.config import ProjectConfig
    cfg = ProjectConfig(str(res.project_dir / "platformio.ini"))
    assert cfg.get("env:nano33ble_sense", "upload_protocol") == NANO33BLE_MANIFEST["upload"]["protocol"]
    cmd = upload_command(res.project_dir, "/dev/ttyACM0", "nano33ble_sense")
    assert cmd[:3] == [sys.executable, "-m", "platformio"]
    assert cmd[3:] == ["run", "-d", str(res.project_dir), "-e", "nano33ble_sense",
                       "-t", "upload", "--upload-port", "/dev/ttyACM0"]
    # require_upload_port: the port is always given; the 1200-bps touch and the wait
    # for the bootloader's port are PlatformIO's (use_1200bps_touch, wait_for_upload_port),
    # so nanoml passes the application port and does not touch it itself.


# ---------------------------------------------------------------------------
# port choice (fake listings)

def test_application_port_is_chosen():
    listing = _ports(("/dev/ttyACM3", *APP, "A1"), ("/dev/ttyUSB0", 0x0403, 0x6001, None))
    info = find_upload_port(get_board(None), ports=listing)
    assert info.device == "/dev/ttyACM3" and info.mode == "application"


def test_board_in_bootloader_is_flashed_on_its_bootloader_port():
    info = find_upload_port(get_board(None), ports=_ports(("/dev/ttyACM1", *BOOT, None)))
    assert info.device == "/dev/ttyACM1" and info.mode == "bootloader"


def test_several_boards_ask_for_port():
    listing = _ports(("/dev/ttyACM0", *APP, "A1"), ("/dev/ttyACM1", *APP, "B2"))
    with pytest.raises(UsageError) as e:
        find_upload_port(get_board(None), ports=listing)
    assert "/dev/ttyACM0" in e.value.message and "/dev/ttyACM1" in e.value.message
    assert "--port" in e.value.hint


def test_no_board_says_plug_in_or_double_tap():
    with pytest.raises(BoardNotFound) as e:
        find_upload_port(get_board(None), ports=_ports(("/dev/ttyACM0", 0x2341, 0x0043, None)))
    assert "plug" in e.value.hint and "double-tap" in e.value.hint
    assert "pulsing" in e.value.hint
    assert "/dev/ttyACM0" in e.value.hint          # the other Arduino device seen


def test_given_port_that_does_not_exist():
    with pytest.raises(BoardNotFound, match="does not exist"):
        find_upload_port(get_board(None), "/dev/nanoml-no-such-port", ports=[])


def test_pseudo_terminal_port_is_accepted():
    """A pty stands in for a board's port: the path exists, it is not in the USB
    listing, so it is taken as given (mode unknown)."""
    master, slave = os.openpty()
    try:
        path = os.ttyname(slave)
        info = find_upload_port(get_board(None), path, ports=[])
        assert info.device == path and info.mode == "unknown"
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0,
                    reason="root can open any port: the permission check cannot fail")
def test_permission_error_names_dialout(tmp_path):
    master, slave = os.openpty()
    try:
        path = os.ttyname(slave)
        os.chmod(path, 0o000)
        with pytest.raises(NanomlError) as e:
            check_port_access(path)
        assert "dialout" in e.value.hint
    finally:
        os.close(master)
        os.close(slave)


# ---------------------------------------------------------------------------
# targets

def test_flash_without_board_stops_before_building(tmp_path):
    p = make_model(tmp_path / "m.tflite")
    opts = FlashOptions(target=p, build=BuildOptions(model=p, out=tmp_path / "proj",
                                                     arena=4096))
    with pytest.raises(BoardNotFound):
        flash(opts, ports=[])
    assert not (tmp_path / "proj" / ".pio").exists()     # PlatformIO never ran


def test_project_folder_target_uses_its_recorded_board(tmp_path):
    p = make_model(tmp_path / "m.tflite")
    res = generate(BuildOptions(model=p, out=tmp_path / "proj", board="nano33ble_sense_rev2",
                                arena=4096))
    project, board, env, gen = resolve_project(FlashOptions(target=res.project_dir))
    assert project == res.project_dir and board.id == "nano33ble_sense_rev2"
    assert env == "nano33ble_sense_rev2" and gen is None


def test_arduino_sketch_cannot_be_flashed(tmp_path):
    p = make_model(tmp_path / "m.tflite")
    res = generate(BuildOptions(model=p, out=tmp_path / "sk", fmt="arduino", arena=4096))
    with pytest.raises(UsageError, match="Arduino sketch") as e:
        resolve_project(FlashOptions(target=res.project_dir))
    assert "arduino-cli upload" in e.value.hint
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no platformio.ini"):
        resolve_project(FlashOptions(target=tmp_path / "empty"))


def test_cli_flash_missing_port_exit_code(tmp_path):
    p = make_model(tmp_path / "m.tflite")
    r = subprocess.run([sys.executable, "-m", "nanoml", "flash", str(p), "--port",
                        "/dev/nanoml-no-such-port", "--arena", "4096", "--out",
                        str(tmp_path / "proj"), "--json"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    d = json.loads(r.stdout)
    assert "does not exist" in d["error"] and d["exit_code"] == 3


def test_wait_for_the_sketch_port_after_upload():
    """Fake listings over time: bootloader, nothing, then the sketch's port."""
    seq = [_ports(("/dev/ttyACM0", *BOOT, None)), [], _ports(("/dev/ttyACM1", *APP, None))]
    calls = []

    def listing():
        calls.append(1)
        return seq[min(len(calls) - 1, len(seq) - 1)]
    from nanoml.firmware.upload import wait_for_sketch_port
    assert wait_for_sketch_port(get_board(None), ports_fn=listing, interval=0.01) == "/dev/ttyACM1"
    assert len(calls) == 3
    assert wait_for_sketch_port(get_board(None), ports_fn=lambda: [], timeout=0.05,
                                interval=0.01) is None
