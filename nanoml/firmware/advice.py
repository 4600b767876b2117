"""Known build / upload / run-time failures -> one line of advice.

`advise(log_lines, context)` reads a PlatformIO log; `advise_device(code, msg,
text)` reads what the firmware reported (an `err` line, or TFLM's own text
lines). Each returns an Advice (kind, message, hint) or a generic one.
`context` may carry: board (Board), libraries (list of lib_deps names),
arena (bytes), model_bytes, port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Advice:
    kind: str          # flash_overflow, ram_overflow, network, package_not_found, ...
    message: str
    hint: str
    detail: str = ""   # the log line that matched

    def to_json(self) -> dict:
        return {"kind": self.kind, "message": self.message, "hint": self.hint,
                "detail": self.detail}


_OVERFLOW_RE = re.compile(r"region [`'\"]?(FLASH|RAM)['\"]? overflowed by (\d+) bytes")
_NOFIT_RE = re.compile(r"section [`'\"]?([.\w]+)['\"]? will not fit in region [`'\"]?(FLASH|RAM)")
_NETWORK_RE = re.compile(r"HTTPClientError|InternetConnectionError|You are not connected to the "
                         r"Internet|Max retries exceeded|NewConnectionError|Could not resolve host|"
                         r"Temporary failure in name resolution|ConnectionError")
_UNKNOWN_PKG_RE = re.compile(r"UnknownPackageError|Could not find the package with '([^']+)'|"
                             r"Library Manager: .*not found|Could not find .* library")
_MISSING_HEADER_RE = re.compile(r"fatal error: ([^:]+): No such file or directory")
_UNDEF_RE = re.compile(r"undefined reference to [`'](.+)'")
_PERM_RE = re.compile(r"(Permission denied|Errno 13|Access is denied).*?(/dev/\S+|COM\d+)?", re.I)
_NO_BOARD_RE = re.compile(r"Couldn't find a board on the selected port|Please specify "
                          r"[`']?upload_port|No device found on|No such file or directory: "
                          r"'?(/dev/\S+)|could not open port|SerialException", re.I)
_BUSY_RE = re.compile(r"Device or resource busy|Resource busy|exclusively lock|"
                      r"Errno 16\b", re.I)
_TIMEOUT_RE = re.compile(r"^nanoml: PlatformIO stopped after (\d+) s")
_ERROR_LINE_RE = re.compile(r"(\berror\b|Error:|\*\*\*)", re.I)


def _libs(context: dict) -> str:
    libs = context.get("libraries") or []
    if len(libs) == 1:
        return libs[0]
    if libs:
        return "the libraries " + ", ".join(libs)
    return "the libraries"


def network_advice(context: dict | None = None, detail: str = "") -> Advice:
    context = context or {}
    return Advice(
        "network",
        "PlatformIO needs the network once to download the nordicnrf52 platform, the mbed "
        f"core, the toolchain and {_libs(context)}; or point nanoml at local packages "
        "(see docs)",
        "connect once and re-run (PlatformIO keeps the packages in ~/.platformio), or set up "
        "local packages in nanoml.toml [offline] / --packages-dir (docs/build.md, offline builds)",
        detail)


def advise(lines: list[str], context: dict | None = None) -> Advice:
    """One-line advice for a failed PlatformIO run (build or upload)."""
    context = context or {}
    board = context.get("board")
    text = list(lines)
    for line in text:
        m = _OVERFLOW_RE.search(line)
        if m:
            region, n = m.group(1), int(m.group(2))
            if region == "FLASH":
                size = f" ({board.flash_bytes:,} B)" if board else ""
                return Advice("flash_overflow",
                              f"the firmware is {n:,} bytes too big for the board's flash{size}",
                              "use a smaller model (int8 weights, fewer parameters) or a model "
                              "with fewer kinds of operators", line.strip())
            arena = context.get("arena")
            what = f"the tensor arena ({arena:,} B) plus the core's RAM" if arena else "the RAM use"
            return Advice("ram_overflow",
                          f"{what} exceeds the board's RAM by {n:,} bytes",
                          f"lower the margin (--arena-margin) or force a smaller --arena; if the "
                          f"prediction itself is too large, the model needs less activation memory",
                          line.strip())
    for line in text:
        m = _NOFIT_RE.search(line)
        if m:
            kind = "flash_overflow" if m.group(2) == "FLASH" else "ram_overflow"
            return Advice(kind, f"section {m.group(1)} does not fit in {m.group(2)}",
                          "use a smaller model or a smaller --arena", line.strip())
    for line in text:
        if _NETWORK_RE.search(line):
            return network_advice(context, line.strip())
    for line in text:
        m = _UNKNOWN_PKG_RE.search(line)
        if m:
            return Advice("package_not_found",
                          f"PlatformIO cannot find a package: {line.strip()}",
                          "check the name and version in lib_deps / the runtime profile; with "
                          "local packages, check the paths in nanoml.toml", line.strip())
    for line in text:
        m = _MISSING_HEADER_RE.search(line)
        if m:
            return Advice("missing_header",
                          f"the compiler cannot find {m.group(1).strip()}",
                          f"the library providing it is not installed: check lib_deps "
                          f"({_libs(context)})", line.strip())
    for line in text:
        m = _UNDEF_RE.search(line)
        if m:
            return Advice("link_error", f"the linker cannot find {m.group(1)}",
                          "the runtime library lacks this function: check --runtime and the "
                          "library version", line.strip())
    for line in text:
        if _PERM_RE.search(line) and ("/dev/" in line or "COM" in line or "port" in line.lower()):
            return permission_advice(line.strip())
    for line in text:
        if _BUSY_RE.search(line):
            return Advice("port_busy", "the board's serial port is busy",
                          "close the other program that has it open (a serial monitor, the "
                          "Arduino IDE, another `nanoml monitor`) and retry", line.strip())
    for line in text:
        if _NO_BOARD_RE.search(line):
            return no_board_advice(line.strip(), context.get("port"))
    for line in text:
        m = _TIMEOUT_RE.match(line)
        if m:
            return Advice("timeout", f"PlatformIO did not finish within {m.group(1)} s",
                          "re-run; if it hangs at upload, double-tap the reset button and retry",
                          line.strip())
    last = ""
    for line in reversed(text):
        if _ERROR_LINE_RE.search(line):
            last = line.strip()
            break
    return Advice("failed", f"PlatformIO failed{': ' + last if last else ''}",
                  "re-run with --verbose and read the log above", last)


def permission_advice(detail: str = "") -> Advice:
    return Advice(
        "permission",
        "no permission to open the board's serial port",
        "on Linux add yourself to the dialout group: `sudo usermod -aG dialout $USER`, then log "
        "out and in again (or install PlatformIO's udev rules: "
        "https://docs.platformio.org/en/latest/core/installation/udev-rules.html)",
        detail)


def no_board_advice(detail: str = "", port: str | None = None) -> Advice:
    where = f" on {port}" if port else ""
    return Advice(
        "no_board",
        f"no board answered{where}",
        "plug the board in with a data USB cable; if it still does not show, double-tap its reset "
        "button (a pulsing orange LED means bootloader mode) and retry",
        detail)


# Text TFLM prints itself (builds without -DTF_LITE_STRIP_ERROR_STRINGS).
_TFLM_MISSING_OP_RE = re.compile(r"Didn't find op for builtin opcode '([^']+)'|"
                                 r"Failed to get registration from op code ([A-Z0-9_]+)")
_TFLM_ARENA_RE = re.compile(r"Failed to (allocate|resize)|Arena size is too small|"
                            r"Failed starting model allocation")


def advise_device(code: str | None = None, msg: str | None = None, text: str = "") -> Advice | None:
    """Advice for what the firmware reported: an `err` line (code, msg) and/or a
    plain text line (TFLM's own messages). None when nothing is recognised."""
    m = _TFLM_MISSING_OP_RE.search(text or "") or _TFLM_MISSING_OP_RE.search(msg or "")
    if m or code == "ops":
        op = (m.group(1) or m.group(2)) if m else (msg or "?")
        return Advice("missing_op",
                      f"the firmware has no kernel for operator {op}",
                      "rebuild with `nanoml build` (it registers exactly the model's ops); if it "
                      "persists, the runtime library lacks the op: try the other --runtime",
                      text or msg or "")
    if code == "alloc" or _TFLM_ARENA_RE.search(text or ""):
        return Advice("arena_too_small",
                      "AllocateTensors() failed: the tensor arena is too small (or an operator "
                      "is missing)",
                      "rebuild with a larger margin (--arena-margin 10%) or --arena N; "
                      "`nanoml build --profile` measures the real minimum on the board",
                      text or msg or "")
    if code == "invoke":
        return Advice("invoke_failed", "Invoke() failed on the board",
                      "check the input (shape, type) and the runtime's op versions "
                      "(`nanoml inspect MODEL`)", msg or "")
    if code == "sensor":
        return Advice("sensor", f"the sensor did not start: {msg}",
                      "check --board (Rev1 has the LSM9DS1 IMU, Rev2 the BMI270/BMM150)",
                      msg or "")
    if code == "model":
        return Advice("model", f"the model was rejected: {msg}",
                      "re-convert the model with a TensorFlow version the runtime supports",
                      msg or "")
    return None
