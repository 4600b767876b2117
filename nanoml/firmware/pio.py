"""Run PlatformIO (`python -m platformio` from nanoml's own environment).

`run_pio()` streams the output line by line to a callback (the CLI shows a
progress display), enforces a timeout, and returns a PioResult with the exit
code, the whole log, the RAM/Flash usage lines parsed, and - on failure - the
one-line advice from advice.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .advice import Advice, advise

# "RAM:   [==        ]  17.0% (used 44552 bytes from 262144 bytes)"
_USAGE_RE = re.compile(
    r"^(RAM|Flash):\s*\[[^\]]*\]\s*(-?[\d.]+)%\s*\(used\s+(\d+)\s+bytes\s+from\s+(\d+)\s+bytes\)")
# Compiling / archiving / linking lines, for the progress display.
_STEP_RE = re.compile(r"^(Compiling|Archiving|Linking|Indexing|Building|Checking|Retrieving|"
                      r"Uploading|Looking for|Waiting for|Forcing reset|Tool Manager|"
                      r"Platform Manager|Library Manager|Installing|Unpacking|Downloading|"
                      r"Processing|Resolving|Dependency Graph)\b")

DEFAULT_BUILD_TIMEOUT = 1800     # first build downloads ~200 MB and compiles TFLM
DEFAULT_UPLOAD_TIMEOUT = 180
LOG_TAIL_LINES = 40


@dataclass
class Usage:
    what: str        # "RAM" or "Flash"
    used: int
    total: int
    percent: float

    def to_json(self) -> dict:
        return {"used_bytes": self.used, "total_bytes": self.total, "percent": self.percent}


@dataclass
class PioResult:
    command: list[str]
    returncode: int
    seconds: float
    log: list[str] = field(default_factory=list)
    usage: dict[str, Usage] = field(default_factory=dict)
    advice: Advice | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def to_json(self) -> dict:
        return {"command": self.command, "returncode": self.returncode, "ok": self.ok,
                "seconds": round(self.seconds, 2), "timed_out": self.timed_out,
                "usage": {k.lower(): v.to_json() for k, v in self.usage.items()},
                "advice": self.advice.to_json() if self.advice else None,
                "log_tail": [] if self.ok else self.log[-LOG_TAIL_LINES:]}


def parse_usage(lines) -> dict[str, Usage]:
    out: dict[str, Usage] = {}
    for line in lines:
        m = _USAGE_RE.match(line.strip())
        if m:
            out[m.group(1)] = Usage(m.group(1), int(m.group(3)), int(m.group(4)),
                                    float(m.group(2)))
    return out


def step_of(line: str) -> str | None:
    """A short description of what PlatformIO is doing, from one output line."""
    s = line.strip()
    if _STEP_RE.match(s):
        return s if len(s) <= 100 else s[:97] + "..."
    return None


def pio_command(project_dir: Path, targets: list[str] | None = None,
                upload_port: str | None = None, environment: str | None = None,
                verbose: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "platformio", "run", "-d", str(project_dir)]
    if environment:
        cmd += ["-e", environment]
    for t in targets or []:
        cmd += ["-t", t]
    if upload_port:
        cmd += ["--upload-port", upload_port]
    if verbose:
        cmd.append("-v")
    return cmd


def run_pio(cmd: list[str], on_line: Callable[[str], None] | None = None,
            timeout: float = DEFAULT_BUILD_TIMEOUT, env: dict | None = None,
            context: dict | None = None) -> PioResult:
    """Run a PlatformIO command; never waits longer than `timeout` seconds."""
    penv = dict(os.environ)
    penv.setdefault("PLATFORMIO_NO_ANSI", "true")   # plain text to parse
    penv["PYTHONUNBUFFERED"] = "1"
    penv.setdefault("PLATFORMIO_DISABLE_PROGRESSBAR", "true")
    if env:
        penv.update(env)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=penv, text=True,
                                errors="replace", bufsize=1, start_new_session=True)
    except OSError as e:
        res = PioResult(cmd, 127, 0.0, [f"cannot start PlatformIO: {e}"])
        res.advice = advise(res.log, context)
        return res
    log: list[str] = []
    timed_out = threading.Event()

    def _kill():
        timed_out.set()
        try:
            os.killpg(proc.pid, 15)
        except OSError:
            pass

    timer = threading.Timer(timeout, _kill)
    timer.daemon = True
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\r\n")
            log.append(line)
            if on_line:
                on_line(line)
        rc = proc.wait()
    except KeyboardInterrupt:
        _kill()
        proc.wait()
        raise
    finally:
        timer.cancel()
    res = PioResult(cmd, rc, time.monotonic() - start, log, parse_usage(log),
                    timed_out=timed_out.is_set())
    if not res.ok:
        if res.timed_out:
            log.append(f"nanoml: PlatformIO stopped after {timeout:.0f} s (timeout)")
        res.advice = advise(log, context)
    return res
