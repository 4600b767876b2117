"""`nanoml flash` as a library: find the board, build if needed, upload.

The upload itself is PlatformIO's (`pio run -t upload --upload-port PORT`):
for the nano33ble board manifest that is sam-ba (bossac) with a 1200-bps
touch on PORT, after which PlatformIO waits for the bootloader's port to
appear (boards/*.toml [upload] records those manifest facts). nanoml therefore
does not touch the port itself; it only picks PORT:

- the board's application port (USB 2341:805A) when it runs a sketch;
- its bootloader port (2341:005A) when it sits in the bootloader (double-tapped
  reset, pulsing LED) - the touch is then harmless and PlatformIO falls back to
  the same port;
- with several boards, nothing: the user picks one with --port.

Every step has a timeout; nothing waits forever.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..boards import Board, get_board
from ..errors import BoardNotFound, NanomlError, ToolError, UsageError
from .advice import Advice, no_board_advice, permission_advice
from .build import BuildOptions, BuildResult, compile_project, generate, pio_context, project_meta
from .pio import DEFAULT_BUILD_TIMEOUT, DEFAULT_UPLOAD_TIMEOUT, PioResult, pio_command, run_pio

_DONE_RE = re.compile(r"Done in ([\d.]+) seconds")
_WRITE_RE = re.compile(r"Write (\d+) bytes to flash")


@dataclass
class FlashOptions:
    target: str | Path                 # a .tflite model or a generated project folder
    port: str | None = None
    board: str | None = None
    build: BuildOptions | None = None  # options for a model target
    build_timeout: float = DEFAULT_BUILD_TIMEOUT
    upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT
    verbose: bool = False


@dataclass
class UploadPlan:
    project_dir: Path
    environment: str | None
    board: Board
    port: object                       # nanoml.serial.ports.PortInfo
    command: list[str]
    touch_1200bps: bool                # done by PlatformIO (board manifest use_1200bps_touch)
    wait_for_upload_port: bool

    def to_json(self) -> dict:
        return {"project_dir": str(self.project_dir), "environment": self.environment,
                "board": self.board.id, "port": self.port.to_json(), "command": self.command,
                "touch_1200bps_by": "platformio" if self.touch_1200bps else None,
                "wait_for_upload_port": self.wait_for_upload_port}


@dataclass
class FlashResult:
    plan: UploadPlan | None
    generated: BuildResult | None = None
    build: PioResult | None = None
    upload: PioResult | None = None
    bytes_written: int | None = None
    upload_seconds: float | None = None
    advice: Advice | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.upload is not None and self.upload.ok

    @property
    def exit_code(self) -> int:
        if self.ok:
            return 0
        if self.advice and self.advice.kind in ("no_board", "permission"):
            return BoardNotFound.exit_code
        return ToolError.exit_code

    def to_json(self) -> dict:
        return {"ok": self.ok, "plan": self.plan.to_json() if self.plan else None,
                "generated": self.generated.to_json() if self.generated else None,
                "build": self.build.to_json() if self.build else None,
                "upload": self.upload.to_json() if self.upload else None,
                "bytes_written": self.bytes_written, "upload_seconds": self.upload_seconds,
                "advice": self.advice.to_json() if self.advice else None,
                "notes": self.notes, "exit_code": self.exit_code}


def upload_command(project_dir: Path, port: str, environment: str | None = None,
                   verbose: bool = False) -> list[str]:
    """PlatformIO's upload for the project (the 1200-bps touch and the wait for
    the bootloader port are PlatformIO's, from the board manifest)."""
    return pio_command(project_dir, targets=["upload"], upload_port=port,
                       environment=environment, verbose=verbose)


def find_upload_port(board: Board, port: str | None = None, ports=None):
    """The port to pass to PlatformIO (application or bootloader), or an error
    that says what to do."""
    from ..serial.ports import find_board_port
    try:
        info = find_board_port(board, port, accept_bootloader=True, ports=ports)
    except BoardNotFound as e:
        adv = no_board_advice(e.message)
        hint = adv.hint
        if e.hint and "Arduino devices seen" in e.hint:
            hint += "; " + e.hint.split("; ", 1)[-1]
        raise BoardNotFound(e.message, hint=hint) from None
    check_port_access(info.device)
    return info


def check_port_access(device: str) -> None:
    """Fail early, with the dialout advice, when the port cannot be opened for
    lack of permission (Linux / macOS)."""
    if os.name == "nt" or not os.path.exists(device):
        return
    if not os.access(device, os.R_OK | os.W_OK):
        adv = permission_advice(device)
        raise NanomlError(f"no permission to open {device}", hint=adv.hint, exit_code=3)


def resolve_project(opts: FlashOptions) -> tuple[Path, Board, str | None, BuildResult | None]:
    """(project folder, board, PlatformIO environment, generation result)."""
    target = Path(opts.target)
    if target.is_dir():
        if not (target / "platformio.ini").is_file():
            meta = project_meta(target)
            if meta.get("format") == "arduino":
                raise UsageError(f"{target} is an Arduino sketch; nanoml flashes PlatformIO projects",
                                 hint="upload it with `arduino-cli upload -p PORT -b "
                                      "arduino:mbed_nano:nano33ble` or build with "
                                      "--format platformio")
            raise UsageError(f"{target} is neither a .tflite model nor a PlatformIO project "
                             f"(no platformio.ini)", hint="pass a model, or the folder "
                             "`nanoml build` wrote")
        meta = project_meta(target)
        board = get_board(opts.board or meta.get("board"))
        return target, board, meta.get("env"), None
    if not target.exists():
        raise UsageError(f"{target}: no such file or folder")
    bopts = opts.build or BuildOptions(model=target)
    bopts.model = target
    if opts.board:
        bopts.board = opts.board
    bopts.fmt = "platformio"
    gen = generate(bopts)
    return gen.project_dir, gen.spec.board, gen.spec.board.id, gen


def flash(opts: FlashOptions, on_line: Callable[[str], None] | None = None,
          on_stage: Callable[[str], None] | None = None, ports=None) -> FlashResult:
    stage = on_stage or (lambda s: None)
    project_dir, board, env, gen = resolve_project(opts)
    stage("looking for the board")
    info = find_upload_port(board, opts.port, ports=ports)
    up = board.raw.get("upload", {})
    plan = UploadPlan(project_dir=project_dir, environment=env, board=board, port=info,
                      command=upload_command(project_dir, info.device, env, opts.verbose),
                      touch_1200bps=bool(up.get("use_1200bps_touch", True)),
                      wait_for_upload_port=bool(up.get("wait_for_upload_port", True)))
    res = FlashResult(plan=plan, generated=gen)
    ctx = pio_context(gen.spec) if gen else {"board": board}
    ctx["port"] = info.device

    stage("building")
    res.build = compile_project(project_dir, gen.spec if gen else None, on_line,
                                opts.build_timeout, opts.verbose, env)
    if not res.build.ok:
        res.advice = res.build.advice
        return res

    stage(f"uploading to {info.device}")
    res.upload = run_pio(plan.command, on_line=on_line, timeout=opts.upload_timeout, context=ctx)
    for line in res.upload.log:
        m = _WRITE_RE.search(line)
        if m:
            res.bytes_written = int(m.group(1))
        m = _DONE_RE.search(line)
        if m:
            res.upload_seconds = float(m.group(1))
    if not res.upload.ok:
        res.advice = res.upload.advice
    return res


def wait_for_sketch_port(board: Board, port: str | None = None, timeout: float = 10.0,
                         interval: float = 0.25, ports_fn=None) -> str | None:
    """After an upload the board resets and its application port comes back
    (same or new name): wait for it, at most `timeout` s. The port, or None."""
    from ..serial.ports import find_board_port
    deadline = time.monotonic() + timeout
    while True:
        try:
            listing = ports_fn() if ports_fn else None
            return find_board_port(board, port, ports=listing).device
        except NanomlError:
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
