"""The process boundary (nanoml.cli.main / commands._common): a closed stdout is a
normal end (exit 0, nothing on stderr), Ctrl-C exits 130 with one line, an
unexpected exception prints one line naming a crash file that holds the traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from conftest import sigint_default

ROOT = Path(__file__).resolve().parent.parent
GESTURE = str(ROOT / "examples" / "gesture" / "gesture_int8.tflite")
INPUTS = str(ROOT / "examples" / "gesture" / "inputs.npy")


def nanoml(*args) -> list[str]:
    return [sys.executable, "-m", "nanoml", *map(str, args)]


def run_closed_stdout(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run nanoml with the reading end of its stdout closed at once (`| head -0`)."""
    p = subprocess.Popen(nanoml(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode("utf-8", "replace")
    p.wait(timeout=timeout)
    return subprocess.CompletedProcess(args, p.returncode, b"", err)


@pytest.mark.parametrize("args", [
    ("inspect", GESTURE),
    ("inspect", GESTURE, "--json"),
    ("profile", GESTURE, "--estimate"),
    ("boards",),
    ("--help",),
])
def test_closed_pipe_is_a_normal_end(args):
    r = run_closed_stdout(*args)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "error" not in r.stderr, r.stderr


def test_closed_pipe_ends_monitor_quietly():
    """`nanoml monitor --sim M | head`: the monitor (and its sim child) stop, exit 0."""
    t0 = time.monotonic()
    r = run_closed_stdout("monitor", "--sim", GESTURE, "--sim-rate", 50, "--count", 100000)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert time.monotonic() - t0 < 50            # it did not run to its count


def _silent_port():
    """A pseudo-terminal nobody answers on: the command waits for a board."""
    master, slave = os.openpty()
    return master, slave, os.ttyname(slave)


@pytest.mark.parametrize("args", [
    ("validate", GESTURE, "--inputs", INPUTS),
    ("profile", GESTURE, "--no-flash", "--no-record"),
])
def test_ctrl_c_exits_130_with_one_line(args):
    master, slave, port = _silent_port()
    try:
        p = subprocess.Popen(nanoml(*args, "--port", port), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default)
        time.sleep(3)                              # waiting for the board's hello
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        os.close(master)
        os.close(slave)
    assert p.returncode == 130
    assert err == "interrupted\n"
    assert out == ""


# ---------------------------------------------------------------- unexpected exceptions

def _buggy_app(kind: str = "RuntimeError") -> typer.Typer:
    """A command with a bug in it, run through the real boundary."""
    from nanoml.commands._common import JSON_OPTION, handle_errors
    app = typer.Typer(add_completion=False)

    @app.command()
    def boom(json_out: bool = JSON_OPTION) -> None:
        with handle_errors(json_out):
            raise RuntimeError("something\nnobody expected [/bold]")

    @app.command()
    def other() -> None:
        pass
    return app


def _crash_path(line: str) -> Path:
    assert line.startswith("error: internal error: RuntimeError: something nobody expected [/bold];")
    marker = "traceback saved to "
    assert marker in line
    return Path(line.split(marker, 1)[1].strip())


def test_internal_error_is_one_line_and_saves_the_traceback(monkeypatch, tmp_path, capsys):
    from nanoml.commands import _common
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(_common.STATE, "debug", False)
    rc = _common.run(_buggy_app(), ["boom"])
    cap = capsys.readouterr()
    assert rc == 70
    lines = cap.err.splitlines()
    assert len(lines) == 1, cap.err
    path = _crash_path(lines[0])
    assert path.parent == tmp_path / "cache" / "nanoml" and path.name.startswith("crash-")
    text = path.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: something" in text
    assert "in boom" in text                       # the frame of the bug


def test_crash_file_falls_back_to_the_temp_dir(monkeypatch, tmp_path, capsys):
    from nanoml.commands import _common
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "below-a-file"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)      # re-read TMPDIR
    monkeypatch.setattr(_common.STATE, "debug", False)
    assert _common.run(_buggy_app(), ["boom"]) == 70
    path = _crash_path(capsys.readouterr().err.strip())
    assert path.parent == tmp_path / "tmp" / "nanoml" and "Traceback" in path.read_text()


def test_internal_error_in_json_is_one_document(monkeypatch, tmp_path, capsys):
    from nanoml.commands import _common
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(_common.STATE, "debug", False)
    assert _common.run(_buggy_app(), ["boom", "--json"]) == 70
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    d = json.loads(out[0])
    assert d["exit_code"] == 70 and d["ok"] is False and d["schema"] == "error/1"
    assert Path(d["error"].split("traceback saved to ", 1)[1]).is_file()


def test_debug_shows_the_traceback(monkeypatch):
    from nanoml.commands import _common
    monkeypatch.setattr(_common.STATE, "debug", True)
    with pytest.raises(RuntimeError, match="nobody expected"):
        _common.run(_buggy_app(), ["boom"])


def test_usage_errors_stay_exit_2(capsys):
    from nanoml.commands import _common
    assert _common.run(_buggy_app(), ["boom", "--nope"]) == 2
    assert "No such option" in capsys.readouterr().err


def test_ctrl_c_while_starting_up_is_the_same_one_line():
    """Ctrl-C while Python imports typer and the command modules (the first half
    second of every run): `interrupted`, exit 130, not an import traceback."""
    code = ("import signal, sys, nanoml\n"
            "signal.signal(signal.SIGALRM, signal.default_int_handler)  # = a Ctrl-C\n"
            "signal.setitimer(signal.ITIMER_REAL, 0.02)\n"
            "import nanoml.cli\n"
            "signal.setitimer(signal.ITIMER_REAL, 0)\n"
            "print('imported before the interrupt')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "imported before the interrupt" not in p.stdout     # the import did take > 20 ms
    assert p.returncode == 130 and p.stderr == "interrupted\n", p.stderr[-500:]
