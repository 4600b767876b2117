"""`nanoml ports`: every serial port, the Nano 33 BLE (Sense) ones marked as
running a sketch (application) or in the bootloader, and running virtual boards.

No board is attached here. The classification is checked on pyserial's own
ListPortInfo objects filled with the fields its Linux lister reads from sysfs
(VID:PID from boards/*.toml; product strings as a Nano 33 BLE reports them:
"Nano 33 BLE" in a sketch, "Arduino Nano 33 BLE" in the bootloader; the serial
numbers are made up in the board's format). The machine's real listing, a real
pty and a real `nanoml sim` are used for the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from serial.tools import list_ports
from serial.tools.list_ports_common import ListPortInfo

from conftest import EXAMPLES
from nanoml.serial.ports import (APPLICATION, BOOTLOADER, UNKNOWN, VIRTUAL, family_name, survey,
                                 virtual_board_dir, virtual_boards)

GESTURE = EXAMPLES / "gesture" / "gesture_int8.tflite"


def usb_port(device, vid, pid, serial=None, product=None, manufacturer=None,
             location="1-1.2:1.0") -> ListPortInfo:
    p = ListPortInfo(device, skip_link_detection=True)
    p.vid, p.pid, p.serial_number = vid, pid, serial
    p.location, p.manufacturer, p.product = location, manufacturer, product
    p.apply_usb_info()          # pyserial's description and hwid, as its Linux lister does
    return p


APP = usb_port("/dev/ttyACM0", 0x2341, 0x805A, "E3D4B66F87C02642", "Nano 33 BLE", "Arduino")
BOOT = usb_port("/dev/ttyACM1", 0x2341, 0x005A, "00000000E3D4B66F87C02642", "Arduino Nano 33 BLE",
                "Arduino", location="1-1.3:1.0")
UNO = usb_port("/dev/ttyACM2", 0x2341, 0x0043, "85736323838351F0E1C1", "Arduino Uno", "Arduino")
FTDI = usb_port("/dev/ttyUSB0", 0x0403, 0x6001, "A50285BI", "FT232R USB UART", "FTDI")
APP10 = usb_port("/dev/ttyACM10", 0x2341, 0x805A, "0123456789ABCDEF", "Nano 33 BLE", "Arduino")
LEGACY = ListPortInfo("/dev/ttyS0", skip_link_detection=True)      # description/hwid 'n/a'
ALL_NANO = ["nano33ble", "nano33ble_sense", "nano33ble_sense_rev2"]


def test_nano_ports_are_marked_sketch_or_bootloader_and_come_first():
    s = survey(ports=[LEGACY, FTDI, APP10, UNO, BOOT, APP], virtual_dir=Path("/nonexistent"))
    assert [(p.device, p.mode) for p in s.ports] == [
        ("/dev/ttyACM0", APPLICATION), ("/dev/ttyACM10", APPLICATION), ("/dev/ttyACM1", BOOTLOADER),
        ("/dev/ttyACM2", UNKNOWN), ("/dev/ttyS0", UNKNOWN), ("/dev/ttyUSB0", UNKNOWN)]
    app, boot = s.ports[0], s.ports[2]
    # the three profiles share their USB ids: all are named, under one family name
    assert list(app.boards) == ALL_NANO and app.board_name == "Arduino Nano 33 BLE (Sense)"
    assert app.serial_number == "E3D4B66F87C02642" and app.description == "Nano 33 BLE"
    assert app.hwid == "USB VID:PID=2341:805A SER=E3D4B66F87C02642 LOCATION=1-1.2:1.0"
    assert boot.vidpid == "2341:005A" and boot.description == "Arduino Nano 33 BLE"
    other = {p.device: p for p in s.ports}
    assert other["/dev/ttyACM2"].boards == () and other["/dev/ttyACM2"].board_name is None
    assert other["/dev/ttyS0"].description == "n/a" and other["/dev/ttyS0"].vidpid is None
    j = s.to_json()
    assert j["counts"] == {"application": 2, "bootloader": 1, "virtual": 0, "unknown": 3}
    assert j["ports"][0] == {
        "device": "/dev/ttyACM0", "mode": "application", "usb": "2341:805A", "vid": 0x2341,
        "pid": 0x805A, "serial_number": "E3D4B66F87C02642", "description": "Nano 33 BLE",
        "manufacturer": "Arduino", "product": "Nano 33 BLE", "location": "1-1.2:1.0",
        "hwid": "USB VID:PID=2341:805A SER=E3D4B66F87C02642 LOCATION=1-1.2:1.0",
        "board_name": "Arduino Nano 33 BLE (Sense)", "boards": ALL_NANO, "target": None}


def test_board_filter_keeps_only_that_profiles_ports():
    s = survey(board="nano33ble_sense_rev2", ports=[LEGACY, FTDI, UNO, BOOT, APP])
    assert [(p.device, p.mode, p.boards) for p in s.ports] == [
        ("/dev/ttyACM0", APPLICATION, ("nano33ble_sense_rev2",)),
        ("/dev/ttyACM1", BOOTLOADER, ("nano33ble_sense_rev2",))]
    assert s.ports[0].board_name == "Arduino Nano 33 BLE Sense Rev2" and s.board == "nano33ble_sense_rev2"


def test_family_name():
    assert family_name(["Arduino Nano 33 BLE", "Arduino Nano 33 BLE Sense (Rev1)",
                        "Arduino Nano 33 BLE Sense Rev2"]) == "Arduino Nano 33 BLE (Sense)"
    assert family_name(["Board A", "Board B"]) == "Board A/B"
    assert family_name(["Only"]) == "Only" and family_name([]) is None


def test_the_table_never_cuts_a_port_or_serial_number(capsys):
    from nanoml.commands.ports import _render
    _render(survey(ports=[LEGACY, FTDI, UNO, BOOT, APP], virtual_dir=Path("/nonexistent")))
    out, err = capsys.readouterr()
    for p in (APP, BOOT, UNO, FTDI, LEGACY):
        assert p.device in out
    for sn in ("E3D4B66F87C02642", "00000000E3D4B66F87C02642", "A50285BI"):
        assert sn in out
    assert max(map(len, out.splitlines())) <= 80
    assert "1 board(s) running a sketch: /dev/ttyACM0" in err
    assert "/dev/ttyACM1: in its bootloader" in err and "press reset once" in err


# ---------------------------------------------------------------- this machine, for real

def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nanoml", "ports", *args], capture_output=True,
                          text=True, timeout=60)


def test_json_lists_what_pyserial_lists_and_a_pty_is_not_a_listed_port():
    m, s = os.openpty()
    try:
        pty = os.ttyname(s)
        r = cli("--json")
    finally:
        os.close(m)
        os.close(s)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "ports/1" and doc["exit_code"] == 0
    listed = sorted(p.device for p in list_ports.comports())
    assert sorted(p["device"] for p in doc["ports"] if p["mode"] != VIRTUAL) == listed
    # pyserial lists USB, platform and legacy serial devices, never pseudo-terminals
    assert pty not in [p["device"] for p in doc["ports"]]


def test_no_matching_port_is_exit_0_and_says_so():
    r = cli("-b", "nano33ble")
    if any((p.vid, p.pid) in ((0x2341, 0x805A), (0x2341, 0x005A)) for p in list_ports.comports()):
        pytest.skip("a Nano 33 BLE is attached")
    assert r.returncode == 0 and r.stdout == ""
    assert r.stderr.startswith("no serial ports with the USB ids of nano33ble\nhint: ")
    assert cli("-b", "").returncode == 2 and cli("-b", "nope").returncode == 2


def test_a_running_sim_is_listed_as_a_virtual_board():
    from nanoml.sim.board import default_link_path
    from nanoml.sim.process import SimProcess
    assert virtual_board_dir() == default_link_path().parent
    link = virtual_board_dir() / f"test-ports-{os.getpid()}"
    sim = SimProcess.spawn(GESTURE, rate_hz=5, link=link)
    try:
        doc = json.loads(cli("--json").stdout)
        mine = [p for p in doc["ports"] if p["device"] == str(link)]
        assert len(mine) == 1 and mine[0]["mode"] == VIRTUAL and mine[0]["target"] == sim.port
        assert mine[0]["board_name"] == "nanoml sim (virtual board)"
        r = cli()
        assert str(link) in r.stdout and "virtual board(s)" in r.stderr
    finally:
        sim.stop()
    assert str(link) not in [p["device"] for p in json.loads(cli("--json").stdout)["ports"]]


def test_dangling_and_non_terminal_links_are_not_virtual_boards(tmp_path):
    (tmp_path / "gone").symlink_to("/dev/pts/999999")          # a sim killed with SIGKILL
    (tmp_path / "file").write_text("x")
    (tmp_path / "to-file").symlink_to(tmp_path / "file")
    m, s = os.openpty()
    try:
        (tmp_path / "live").symlink_to(os.ttyname(s))
        # a dead sim's link whose pty number a newer pty took: the link is older than the pty
        (tmp_path / "reused").symlink_to(os.ttyname(s))
        made = os.stat(os.ttyname(s)).st_ctime
        os.utime(tmp_path / "reused", (made - 60, made - 60), follow_symlinks=False)
        assert [(p.device, p.target) for p in virtual_boards(tmp_path)] == [
            (str(tmp_path / "live"), os.ttyname(s))]
    finally:
        os.close(m)
        os.close(s)
    assert virtual_boards(tmp_path / "missing") == []


def test_documented_json_is_the_real_json():
    """docs/ports.md's table against the real document (and its example too)."""
    js = pytest.importorskip("test_json_schema")
    rows = js.schema("ports/1")
    js.check(json.loads(cli("--json").stdout), rows, "nanoml ports --json")
    doc = (Path(__file__).resolve().parent.parent / "docs" / "ports.md").read_text()
    js.check(json.loads(doc.split("```json\n", 1)[1].split("```", 1)[0]), rows, "docs example")
    from nanoml import __version__
    real = survey(ports=[APP, BOOT, LEGACY]).to_json()
    js.check({"nanoml_version": __version__, "schema": "ports/1", "exit_code": 0, "ok": True, **real},
             rows, "with a board")
