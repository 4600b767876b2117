"""Board profiles: data files in boards/, one per board."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache

from .errors import UsageError
from .resources import data_dir

DEFAULT_BOARD = "nano33ble_sense"


@dataclass(frozen=True)
class Board:
    id: str
    name: str
    mcu: str
    cpu: str
    clock_hz: int
    flash_bytes: int
    ram_bytes: int
    usb_application: str      # "VID:PID", upper-case hex
    usb_bootloader: str
    baseline_flash: int
    baseline_ram: int
    fqbn: str
    platformio: dict
    sensors: dict
    raw: dict

    @staticmethod
    def _vidpid(s: str) -> tuple[int, int]:
        v, p = s.split(":")
        return int(v, 16), int(p, 16)

    @property
    def app_ids(self) -> tuple[int, int]:
        return self._vidpid(self.usb_application)

    @property
    def boot_ids(self) -> tuple[int, int]:
        return self._vidpid(self.usb_bootloader)

    def to_json(self) -> dict:
        return {
            "id": self.id, "name": self.name, "mcu": self.mcu, "cpu": self.cpu,
            "clock_hz": self.clock_hz, "flash_bytes": self.flash_bytes,
            "ram_bytes": self.ram_bytes,
            "usb": {"application": self.usb_application, "bootloader": self.usb_bootloader},
            "baseline": {"flash_bytes": self.baseline_flash, "ram_bytes": self.baseline_ram},
            "platformio": self.platformio, "sensors": self.sensors,
        }


def _from_dict(d: dict) -> Board:
    return Board(
        id=d["id"], name=d["name"], mcu=d["mcu"], cpu=d["cpu"], clock_hz=d["clock_hz"],
        flash_bytes=d["flash_bytes"], ram_bytes=d["ram_bytes"],
        usb_application=d["usb"]["application"].upper(),
        usb_bootloader=d["usb"]["bootloader"].upper(),
        baseline_flash=d["baseline"]["flash_bytes"], baseline_ram=d["baseline"]["ram_bytes"],
        fqbn=d.get("fqbn", ""), platformio=d["platformio"], sensors=d.get("sensors", {}), raw=d)


@lru_cache(maxsize=None)
def all_boards() -> dict[str, Board]:
    out = {}
    for f in sorted(data_dir("boards").glob("*.toml")):
        b = _from_dict(tomllib.loads(f.read_text()))
        out[b.id] = b
    return out


def get_board(board_id: str | None) -> Board:
    boards = all_boards()
    bid = board_id or DEFAULT_BOARD
    if bid not in boards:
        raise UsageError(f"unknown board '{bid}'; known boards: {', '.join(boards)} (see `nanoml boards`)")
    return boards[bid]
