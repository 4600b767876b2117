"""Find the board's serial port by USB VID:PID, list what is attached, and
open ports with one-line, actionable errors.

    find_board_port(board, port=None) -> PortInfo
    list_candidate_ports(board) -> [PortInfo, ...]
    survey(board=None) -> Survey          # `nanoml ports`: every port, classified
    open_port(path, baud) -> serial.Serial

A board in its sketch shows the board profile's `usb.application` VID:PID
(Nano 33 BLE Sense: 2341:805A); in its bootloader (double-tapped reset, or
during an upload) it shows `usb.bootloader` (2341:005A). `ports=` takes a
listing of objects with `.device`, `.vid`, `.pid` (and optionally
`.serial_number`, `.description`, `.location`, `.hwid`) instead of
`serial.tools.list_ports.comports()`, for tests and callers that already
listed them.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BoardNotFound, NanomlError, UsageError

APPLICATION = "application"
BOOTLOADER = "bootloader"
UNKNOWN = "unknown"
VIRTUAL = "virtual"             # a `nanoml sim` board: a pty behind a link in virtual_board_dir()

ARDUINO_VID = 0x2341


@dataclass(frozen=True)
class PortInfo:
    device: str                  # /dev/ttyACM0, COM5, or a pty / symlink path
    mode: str                    # application | bootloader | unknown
    vid: int | None = None
    pid: int | None = None
    serial_number: str | None = None
    description: str | None = None
    location: str | None = None
    board: str | None = None     # board id the VID:PID matched
    manufacturer: str | None = None
    product: str | None = None
    hwid: str | None = None
    boards: tuple[str, ...] = ()  # every board profile with this VID:PID (`nanoml ports`)
    target: str | None = None    # VIRTUAL: the pty the link points to

    @property
    def vidpid(self) -> str | None:
        if self.vid is None or self.pid is None:
            return None
        return f"{self.vid:04X}:{self.pid:04X}"

    def to_json(self) -> dict:
        return {"device": self.device, "mode": self.mode, "usb": self.vidpid,
                "serial_number": self.serial_number, "description": self.description,
                "location": self.location, "board": self.board}

    def listing_json(self) -> dict:
        """The record of one port in `nanoml ports --json` (docs/ports.md)."""
        return {"device": self.device, "mode": self.mode, "usb": self.vidpid,
                "vid": self.vid, "pid": self.pid, "serial_number": self.serial_number,
                "description": self.description, "manufacturer": self.manufacturer,
                "product": self.product, "location": self.location, "hwid": self.hwid,
                "board_name": self.board_name, "boards": list(self.boards), "target": self.target}

    @property
    def board_name(self) -> str | None:
        """What the USB id says the device is ("Arduino Nano 33 BLE (Sense)": the
        profiles share their ids), a virtual board, or None."""
        if self.mode == VIRTUAL:
            return "nanoml sim (virtual board)"
        if not self.boards:
            return None
        from ..boards import all_boards
        known = all_boards()
        return family_name([known[b].name for b in self.boards if b in known])

    def label(self) -> str:
        extra = ", ".join(x for x in (self.vidpid, self.serial_number and f"s/n {self.serial_number}",
                                      self.mode if self.mode != UNKNOWN else None) if x)
        return f"{self.device} ({extra})" if extra else self.device


def _board(board):
    from ..boards import get_board
    return board if hasattr(board, "app_ids") else get_board(board)


def _listing(ports):
    if ports is not None:
        return list(ports)
    from serial.tools import list_ports
    return list(list_ports.comports())


def _info(p, mode: str, board_id: str | None, boards: tuple[str, ...] = ()) -> PortInfo:
    return PortInfo(device=p.device, mode=mode, vid=getattr(p, "vid", None),
                    pid=getattr(p, "pid", None),
                    serial_number=getattr(p, "serial_number", None),
                    description=getattr(p, "description", None),
                    location=getattr(p, "location", None), board=board_id,
                    manufacturer=getattr(p, "manufacturer", None),
                    product=getattr(p, "product", None), hwid=getattr(p, "hwid", None),
                    boards=boards)


def classify(p, board) -> str:
    """application / bootloader / unknown for one listed port."""
    b = _board(board)
    ids = (getattr(p, "vid", None), getattr(p, "pid", None))
    if ids == b.app_ids:
        return APPLICATION
    if ids == b.boot_ids:
        return BOOTLOADER
    return UNKNOWN


def list_candidate_ports(board=None, ports=None) -> list[PortInfo]:
    """Ports whose VID:PID is the board's application or bootloader id,
    application ports first, each group sorted by device name."""
    b = _board(board)
    out = []
    for p in _listing(ports):
        mode = classify(p, b)
        if mode != UNKNOWN:
            out.append(_info(p, mode, b.id))
    return sorted(out, key=lambda i: (i.mode != APPLICATION, i.device))


def find_board_port(board=None, port: str | None = None, *, accept_bootloader: bool = False,
                    ports=None) -> PortInfo:
    """The port to talk to.

    With `port`: that port (described from the listing when it is there; a
    path that does not exist is an error). Without: the one board found by
    VID:PID. Raises BoardNotFound (none, or only in bootloader unless
    `accept_bootloader`) or UsageError (several: pick one with --port)."""
    b = _board(board)
    listing = _listing(ports)
    if port:
        for p in listing:
            if p.device == port:
                return _info(p, classify(p, b), b.id)
        if os.name != "nt" and not os.path.exists(port):
            raise BoardNotFound(f"serial port {port} does not exist",
                                hint="check the --port value; `nanoml monitor` without --port "
                                     "finds the board by its USB id")
        return PortInfo(device=port, mode=UNKNOWN)
    cands = list_candidate_ports(b, listing)
    apps = [c for c in cands if c.mode == APPLICATION]
    boots = [c for c in cands if c.mode == BOOTLOADER]
    if len(apps) == 1:
        return apps[0]
    if len(apps) > 1:
        raise UsageError(f"{len(apps)} {b.name} boards found: "
                         f"{'; '.join(a.label() for a in apps)}",
                         hint="pick one with --port")
    if boots:
        if accept_bootloader:
            if len(boots) > 1:
                raise UsageError(f"{len(boots)} boards in bootloader mode: "
                                 f"{'; '.join(x.label() for x in boots)}", hint="pick one with --port")
            return boots[0]
        raise BoardNotFound(f"the {b.name} on {boots[0].device} is in its bootloader "
                            f"(USB {b.usb_bootloader}), not running a sketch",
                            hint="press the reset button once to start the sketch "
                                 "(or flash one with `nanoml flash`)")
    others = [p for p in listing if getattr(p, "vid", None) == ARDUINO_VID]
    hint = "plug the board in with a data USB cable (charge-only cables show no port) or pass --port"
    if others:
        hint += "; other Arduino devices seen: " + ", ".join(
            _info(p, UNKNOWN, None).label() for p in others)
    raise BoardNotFound(f"no {b.name} found on USB (looked for {b.usb_application})", hint=hint)


# ---------------------------------------------------------------------------
# `nanoml ports`: everything attached

def family_name(names: list[str]) -> str | None:
    """One name for boards that share a USB id: their common words, then the
    distinct next words ("Arduino Nano 33 BLE" + "... Sense (Rev1)" + "... Sense
    Rev2" -> "Arduino Nano 33 BLE (Sense)")."""
    if not names:
        return None
    if len(set(names)) == 1:
        return names[0]
    words = [n.split() for n in names]
    common = []
    for column in zip(*words):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    nxt = sorted({w[len(common)] for w in words if len(w) > len(common)})
    base = " ".join(common) or names[0]
    if not nxt:
        return base
    rest = "/".join(nxt)
    return f"{base} ({rest})" if any(len(w) == len(common) for w in words) else f"{base} {rest}"


def virtual_board_dir() -> Path:
    """Where `nanoml sim` and `monitor --sim` put their links by default (the
    folder of nanoml.sim.board.default_link_path(); tests check they agree)."""
    return Path(tempfile.gettempdir()) / f"nanoml-{getattr(os, 'getuid', lambda: 0)()}"


def reused_pty_link(path) -> bool:
    """True when `path` is a symlink to a pseudo-terminal made after the link:
    the sim that made the link is gone and another program got its pty number
    (a `nanoml sim` opens its pty first, then makes the link). Only ptys are
    judged: a udev link to a real device may be older than the device's
    metadata change."""
    try:
        if not os.path.islink(path):
            return False
        target = os.path.realpath(path)
        if not target.startswith("/dev/pts/"):
            return False
        return os.lstat(path).st_mtime < os.stat(target).st_ctime - 0.05
    except OSError:
        return False


def virtual_boards(folder: Path | None = None) -> list[PortInfo]:
    """Links in `folder` to a terminal device that is there (a running sim).
    Skipped: dangling links (a sim killed with SIGKILL), and links older than
    their pty (the sim makes its pty, then the link: a pty made after the link
    is a new one that reuses the number of a dead sim's)."""
    folder = virtual_board_dir() if folder is None else folder
    out = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return out
    for link in entries:
        try:
            if not link.is_symlink():
                continue
            target = os.path.realpath(link)
            if not stat.S_ISCHR(os.stat(target).st_mode) or reused_pty_link(link):
                continue
        except OSError:
            continue
        out.append(PortInfo(device=str(link), mode=VIRTUAL, target=target,
                            description=f"nanoml sim on {target}"))
    return out


_MODE_ORDER = {APPLICATION: 0, BOOTLOADER: 1, VIRTUAL: 2, UNKNOWN: 3}


def _natural(device: str) -> list:
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", device)]


@dataclass
class Survey:
    """Every serial port the OS lists (and running virtual boards), classified."""
    ports: list[PortInfo] = field(default_factory=list)
    board: str | None = None             # the --board filter, if any

    def of(self, mode: str) -> list[PortInfo]:
        return [p for p in self.ports if p.mode == mode]

    def to_json(self) -> dict:
        return {"board": self.board, "ports": [p.listing_json() for p in self.ports],
                "counts": {m: len(self.of(m)) for m in _MODE_ORDER}}


def survey(board=None, ports=None, virtual_dir: Path | None = None) -> Survey:
    """`nanoml ports`: every listed port, marked application / bootloader when
    its VID:PID is a board profile's (all profiles, or only `board`'s, and then
    only those ports), plus running `nanoml sim` boards (not with `board`).
    Board ports first, then by device name in natural order."""
    from ..boards import all_boards
    profiles = [_board(board)] if board else list(all_boards().values())
    out = []
    for p in _listing(ports):
        ids = (getattr(p, "vid", None), getattr(p, "pid", None))
        app = tuple(b.id for b in profiles if ids == b.app_ids)
        boot = tuple(b.id for b in profiles if ids == b.boot_ids)
        mode, matched = (APPLICATION, app) if app else (BOOTLOADER, boot) if boot else (UNKNOWN, ())
        if board and mode == UNKNOWN:
            continue
        out.append(_info(p, mode, matched[0] if matched else None, matched))
    if not board:
        out += virtual_boards(virtual_dir)
    out.sort(key=lambda i: (_MODE_ORDER[i.mode], _natural(i.device)))
    return Survey(out, profiles[0].id if board else None)


# ---------------------------------------------------------------------------
# opening

def port_error(exc: BaseException, port: str) -> NanomlError:
    """Turn an exception from opening `port` into a one-line error with a hint."""
    err = getattr(exc, "errno", None)
    text = str(exc)
    if err in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        if os.name == "nt":
            hint = "close other programs using the port and try again"
        else:
            hint = ("join the 'dialout' group (sudo usermod -aG dialout $USER), then log out "
                    "and in again")
        return NanomlError(f"permission denied opening {port}", hint=hint, exit_code=3)
    if (err in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text
            or "busy" in text.lower()):
        return NanomlError(f"serial port {port} is busy (another program has it open)",
                           hint="close the other serial monitor (Arduino IDE, screen, "
                                "another `nanoml monitor`) and try again", exit_code=3)
    if err in (errno.ENOENT, errno.ENXIO, errno.ENODEV, errno.EIO) or "No such file" in text:
        return BoardNotFound(f"serial port {port} is gone (board unplugged or reset?)",
                             hint="plug the board in and try again")
    return NanomlError(f"cannot open serial port {port}: {text}", exit_code=3)


def open_port(path: str, baud: int = 115200, timeout: float = 0.1):
    """Open a serial port exclusively (a second monitor gets 'busy').
    Raises the NanomlError from `port_error` on failure."""
    import serial
    try:
        return serial.Serial(path, baud, timeout=timeout, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as e:
        raise port_error(_unwrap(e), path) from None


def _unwrap(e: BaseException) -> BaseException:
    """pyserial wraps OSError in SerialException(errno, msg); keep the errno."""
    if getattr(e, "errno", None) is None and e.args and isinstance(e.args[0], int):
        e.errno = e.args[0]
    return e
