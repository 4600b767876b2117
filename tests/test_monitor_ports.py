"""Port discovery by USB VID:PID and port-error messages.

No board is attached on the machines these tests run on, so the listings
below stand in for `serial.tools.list_ports.comports()` (the functions take
any listing of objects with .device/.vid/.pid); opening errors are checked
on real pseudo-terminals where we can produce them."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from nanoml.errors import BoardNotFound, NanomlError, UsageError
from nanoml.serial.ports import (APPLICATION, BOOTLOADER, find_board_port, list_candidate_ports,
                                 open_port, port_error)


def port(device, vid=None, pid=None, serial=None):
    return SimpleNamespace(device=device, vid=vid, pid=pid, serial_number=serial,
                           description="Nano 33 BLE" if vid == 0x2341 else "n/a", location=None)


APP = port("/dev/ttyACM0", 0x2341, 0x805A, "ABC123")
APP2 = port("/dev/ttyACM3", 0x2341, 0x805A, "DEF456")
BOOT = port("/dev/ttyACM1", 0x2341, 0x005A)
UNO = port("/dev/ttyACM2", 0x2341, 0x0043)
FTDI = port("/dev/ttyUSB0", 0x0403, 0x6001)
LEGACY = port("/dev/ttyS0")


def test_one_board_in_its_sketch_is_found():
    p = find_board_port("nano33ble_sense", ports=[LEGACY, FTDI, APP])
    assert p.device == "/dev/ttyACM0" and p.mode == APPLICATION and p.vidpid == "2341:805A"
    assert p.serial_number == "ABC123" and p.board == "nano33ble_sense"


def test_candidates_are_classified_and_sorted():
    c = list_candidate_ports("nano33ble_sense", ports=[BOOT, UNO, APP2, FTDI, APP])
    assert [(x.device, x.mode) for x in c] == [
        ("/dev/ttyACM0", APPLICATION), ("/dev/ttyACM3", APPLICATION), ("/dev/ttyACM1", BOOTLOADER)]
    assert c[0].to_json()["usb"] == "2341:805A"


def test_several_boards_ask_for_port_and_list_them():
    with pytest.raises(UsageError) as e:
        find_board_port("nano33ble_sense", ports=[APP, APP2])
    assert "/dev/ttyACM0" in e.value.message and "/dev/ttyACM3" in e.value.message
    assert "--port" in e.value.hint


def test_bootloader_only_says_press_reset():
    with pytest.raises(BoardNotFound) as e:
        find_board_port("nano33ble_sense", ports=[BOOT])
    assert "bootloader" in e.value.message and "reset" in e.value.hint
    # the flash command accepts it
    assert find_board_port("nano33ble_sense", ports=[BOOT], accept_bootloader=True).mode == BOOTLOADER
    # a board in its sketch wins over one in the bootloader
    assert find_board_port("nano33ble_sense", ports=[BOOT, APP], accept_bootloader=True).mode == APPLICATION


def test_no_board_is_one_line_with_cable_hint():
    with pytest.raises(BoardNotFound) as e:
        find_board_port("nano33ble_sense", ports=[LEGACY, FTDI])
    assert "\n" not in e.value.message and "2341:805A" in e.value.message
    assert "cable" in e.value.hint and "Arduino" not in e.value.hint
    with pytest.raises(BoardNotFound) as e:
        find_board_port("nano33ble_sense", ports=[UNO])
    assert "2341:0043" in e.value.hint              # other Arduino devices are named


def test_explicit_port():
    assert find_board_port("nano33ble_sense", "/dev/ttyACM0", ports=[APP]).mode == APPLICATION
    m, s = os.openpty()
    try:
        p = find_board_port("nano33ble_sense", os.ttyname(s), ports=[])
        assert p.device == os.ttyname(s) and p.mode == "unknown"
    finally:
        os.close(m)
        os.close(s)
    with pytest.raises(BoardNotFound, match="does not exist"):
        find_board_port("nano33ble_sense", "/dev/ttyNOPE9", ports=[])


def test_unknown_board_id():
    with pytest.raises(UsageError):
        find_board_port("no_such_board", ports=[])


def test_busy_port_is_one_line():
    m, s = os.openpty()
    path = os.ttyname(s)
    first = open_port(path)
    try:
        with pytest.raises(NanomlError) as e:
            open_port(path)
        assert "busy" in e.value.message and e.value.exit_code == 3
        r = subprocess.run([sys.executable, "-m", "nanoml", "monitor", "--port", path, "--count", "1"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 3
        assert r.stderr.splitlines()[0] == f"error: serial port {path} is busy (another program has it open)"
        assert "Traceback" not in r.stderr
    finally:
        first.close()
        os.close(m)
        os.close(s)


def test_permission_and_gone_errors_have_actionable_hints():
    # root opens any device node here, so the permission case is built from its errno
    e = port_error(PermissionError(errno.EACCES, "Permission denied"), "/dev/ttyACM0")
    assert "permission denied" in e.message and "dialout" in e.hint
    e = port_error(OSError(errno.ENOENT, "No such file or directory"), "/dev/ttyACM0")
    assert isinstance(e, BoardNotFound)


def test_monitor_without_board_fails_in_one_line():
    r = subprocess.run([sys.executable, "-m", "nanoml", "monitor", "--count", "1"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode == 0:
        pytest.skip("a real board is attached")
    assert r.returncode == 3
    assert r.stderr.startswith("error: no Arduino Nano 33 BLE Sense") and len(r.stderr.splitlines()) == 2
