"""Run `nanoml sim` as a child process (what `nanoml monitor --sim` does), so
the virtual board lives in its own process like a real board, and can be
killed and restarted.

    sim = SimProcess.spawn("model.tflite", rate_hz=10, link="/tmp/x/nanoml-sim")
    sim.port, sim.link     # from the child's first stdout line ({"port": ...})
    sim.stop()
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import NanomlError

START_TIMEOUT_S = 60.0


class SimProcess:
    def __init__(self, proc: subprocess.Popen, info: dict, stderr_path: Path):
        self.proc = proc
        self.info = info
        self.port: str = info["port"]
        self.link: str | None = info.get("link")
        self._stderr_path = stderr_path

    @classmethod
    def spawn(cls, model: str | Path, *, input: str = "synthetic", rate_hz: float = 10.0,
              link: str | Path | None = None, board: str | None = None,
              runtime: str | None = None, count: int | None = None,
              extra_args: list[str] | None = None,
              timeout: float = START_TIMEOUT_S, deadline=None) -> "SimProcess":
        """Start `nanoml sim` and wait for its port. `deadline` (a Deadline): the
        command's --timeout, which bounds the start and is handed to the child."""
        from .deadline import Deadline
        deadline = Deadline.of(deadline)
        args = [sys.executable, "-m", "nanoml", "sim", str(model), "--json", "--input", input,
                "--rate", str(rate_hz), "--exit-with-parent"]
        if deadline.seconds is not None:
            args += ["--timeout", f"{max(deadline.left(), 0.01):.3f}"]
        if link:
            args += ["--link", str(link)]
        if board:
            args += ["--board", board]
        if runtime:
            args += ["--runtime", runtime]
        if count is not None:
            args += ["--count", str(count)]
        args += extra_args or []
        fd, errname = tempfile.mkstemp(prefix="nanoml-sim-", suffix=".log")
        os.close(fd)
        err = open(errname, "wb")
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        err.close()
        line = _read_line(proc, deadline.left(timeout))
        try:
            info = json.loads(line) if line else None
        except json.JSONDecodeError:
            info = None
        if not info or "port" not in info:
            proc.kill()
            proc.wait()
            why = Path(errname).read_text(errors="replace").strip().splitlines()
            tail = (why[-1] if why else "") or (line or "").strip() or "no output"
            if info and info.get("error"):            # the sim's own one-line error
                raise NanomlError(f"the virtual board did not start: {info['error']}",
                                  hint=info.get("hint"), exit_code=info.get("exit_code"))
            if line is None and proc.returncode is None and deadline.expired:
                raise deadline.error("starting the virtual board")
            raise NanomlError(f"the virtual board did not start: {tail}",
                              hint="run `nanoml sim MODEL` on its own to see why")
        return cls(proc, info, Path(errname))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        """Raise the sim's own error (one line, its exit code) once it has exited."""
        if self.proc.poll() is None:
            return
        info = {}
        try:
            rest = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
            for ln in rest.splitlines():
                doc = json.loads(ln) if ln.strip().startswith("{") else {}
                info = doc if isinstance(doc, dict) and doc.get("error") else info
        except (OSError, ValueError):
            pass
        if info.get("error"):
            raise NanomlError(f"the virtual board stopped: {info['error']}",
                              hint=info.get("hint"), exit_code=info.get("exit_code"))
        try:
            lines = self._stderr_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        said = f": {lines[-1].strip()[:200]}" if lines and lines[-1].strip() else ""
        raise NanomlError(f"the virtual board exited (code {self.proc.returncode}){said}",
                          hint="run `nanoml sim MODEL` on its own to see why")

    def sleep(self, seconds: float) -> None:
        """time.sleep that raises (check) when the sim has exited: for waiting loops."""
        self.check()
        time.sleep(seconds)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM (the sim removes its link and exits), then SIGKILL."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        try:
            self._stderr_path.unlink()
        except OSError:
            pass
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as when the board is unplugged: nothing is cleaned up."""
        self.proc.kill()
        self.proc.wait()


def _read_line(proc: subprocess.Popen, timeout: float) -> str | None:
    """First stdout line of the child, or None on timeout / exit."""
    fd = proc.stdout.fileno()
    buf = b""
    end = time.monotonic() + timeout
    while b"\n" not in buf:
        left = end - time.monotonic()
        if left <= 0:
            return None
        r, _, _ = select.select([fd], [], [], min(left, 0.5))
        if not r:
            if proc.poll() is not None:
                return None
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return buf.decode(errors="replace") or None
        buf += chunk
    return buf.split(b"\n", 1)[0].decode(errors="replace")
