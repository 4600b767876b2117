"""The command line's surface: one option vocabulary (docs/options.md), values
checked before any work, outside text never read as rich markup, tables that never
cut ids or op names, progress on stderr only when it is a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GESTURE = ROOT / "examples" / "gesture" / "gesture_int8.tflite"
INPUTS = ROOT / "examples" / "gesture" / "inputs.npy"


def nanoml(*args, columns: int = 400, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "nanoml", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=timeout)


def in_process(*args) -> tuple[int, str]:
    """The real app through the real boundary, in this process (for usage errors,
    which end before any work)."""
    import contextlib
    import io

    from nanoml.cli import app
    from nanoml.commands import _common
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = _common.run(app, [str(a) for a in args])
    return rc, err.getvalue()


# ---------------------------------------------------------------- markup safety

@pytest.fixture
def markup_model(tmp_path) -> Path:
    """The example model at a path holding rich markup: `.../x[/bold]/[red]m.tflite`."""
    d = tmp_path / "x[" / "bold]"
    d.mkdir(parents=True)
    p = d / "[red]m.tflite"
    shutil.copy(GESTURE, p)
    assert "[/bold]" in str(p) and "[red]" in str(p)
    return p


def _no_markup_trouble(r):
    assert "MarkupError" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_inspect_prints_a_markup_path_literally(markup_model):
    r = nanoml("inspect", markup_model)
    _no_markup_trouble(r)
    assert r.returncode == 0, r.stderr
    assert str(markup_model) in r.stdout


def test_profile_estimate_prints_a_markup_path_literally(markup_model):
    r = nanoml("profile", markup_model, "--estimate")
    _no_markup_trouble(r)
    assert r.returncode == 0, r.stderr
    assert f"model: {markup_model}" in r.stdout


def test_build_prints_markup_paths_literally(markup_model, tmp_path):
    out = markup_model.parent / "fw[/]"
    r = nanoml("build", markup_model, "--no-compile", "-o", out)
    _no_markup_trouble(r)
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout and markup_model.name in r.stdout


def _custom_op_model(path: Path, name: str) -> Path:
    """The example with its SOFTMAX turned into a custom op called `name` (and markup
    in its description)."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    import flatbuffers
    m = s.ModelT.InitFromPackedBuf(GESTURE.read_bytes(), 0)
    for code in m.operatorCodes:
        if max(code.builtinCode, code.deprecatedBuiltinCode) == s.BuiltinOperator.SOFTMAX:
            code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
            code.customCode = name
    m.description = "[red]desc[/bold]"
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path


@pytest.mark.parametrize("name", ["[/]", "[bold red]x", "[/bold]"])
def test_custom_op_named_markup(tmp_path, name):
    p = _custom_op_model(tmp_path / "custom.tflite", name)
    r = nanoml("inspect", p)
    _no_markup_trouble(r)
    assert r.returncode == 1                       # unsupported op: cannot run
    assert f"CUSTOM:{name}" in r.stdout
    r = nanoml("profile", p, "--estimate")
    _no_markup_trouble(r)
    assert r.returncode != 70


# ---------------------------------------------------------------- tables

@pytest.mark.parametrize("columns", [80, 60])
def test_boards_table_never_cuts_ids(columns):
    ids = [b["id"] for b in json.loads(nanoml("boards", "--json").stdout)["boards"]]
    r = nanoml("boards", columns=columns)
    assert r.returncode == 0
    assert "…" not in r.stdout
    cells = re.findall(r"[│|]\s*([a-z0-9_]+)\*?\s*[│|]", r.stdout)
    assert set(ids) <= set(cells), (ids, r.stdout)
    assert max(len(line) for line in r.stdout.splitlines()) <= columns


@pytest.mark.parametrize("columns", [80, 60])
@pytest.mark.parametrize("args", [("inspect",), ("profile", "--estimate")])
def test_op_tables_never_cut_op_names(columns, args):
    ops = {o["op"] for o in json.loads(nanoml("inspect", GESTURE, "--json").stdout)["operators"]}
    assert "DEPTHWISE_CONV_2D" in ops
    r = nanoml(args[0], GESTURE, *args[1:], columns=columns)
    assert r.returncode == 0, r.stderr
    assert "…" not in r.stdout
    table_words = set(re.findall(r"[│┃ ]([A-Z][A-Z0-9_]+)[ │┃]", r.stdout))
    assert ops <= table_words, ops - table_words


# ---------------------------------------------------------------- values are checked

@pytest.mark.parametrize("args, option", [
    (["inspect", GESTURE, "--board", ""], "--board"),
    (["inspect", GESTURE, "--runtime", " "], "--runtime"),
    (["profile", GESTURE, "--estimate", "--board", ""], "--board"),
    (["profile", GESTURE, "--estimate", "--cpi", "nan"], "--cpi"),
    (["profile", GESTURE, "--sim", "--timeout", "inf"], "--timeout"),
    (["profile", GESTURE, "--sim", "--count", "0"], "--count"),
    (["validate", GESTURE, "--inputs", INPUTS, "--sim", "--atol", "nan"], "--atol"),
    (["validate", GESTURE, "--inputs", INPUTS, "--sim", "--min-top1", "nan"], "--min-top1"),
    (["validate", GESTURE, "--inputs", INPUTS, "--sim", "--limit", "0"], "--limit"),
    (["validate", GESTURE, "--inputs", INPUTS, "--port", ""], "--port"),
    (["monitor", "--sim", GESTURE, "--duration", "nan"], "--duration"),
    (["monitor", "--sim", GESTURE, "--sim-rate", "-5"], "--sim-rate"),
    (["monitor", "--sim", GESTURE, "--count", "0"], "--count"),
    (["sim", GESTURE, "--rate", "-1"], "--rate"),
    (["sim", GESTURE, "--rate", "nan"], "--rate"),
    (["sim", GESTURE, "--arena", "lots"], "--arena"),
    (["sim", GESTURE, "--board", ""], "--board"),
    (["build", GESTURE, "--no-compile", "--arena", "20Q"], "--arena"),
    (["build", GESTURE, "--no-compile", "--timeout", "nan"], "--timeout"),
    (["build", GESTURE, "--no-compile", "--rate", "0"], "--rate"),
    (["build", GESTURE, "--no-compile", "--input", "camera"], "--input"),
    (["convert", GESTURE, "--quantize", "int4"], "--quantize"),
    (["convert", GESTURE, "--limit", "0"], "--limit"),
    (["flash", GESTURE, "--upload-timeout", "nan"], "--upload-timeout"),
])
def test_bad_values_are_usage_errors(args, option):
    rc, err = in_process(*args)
    assert rc == 2, err
    assert err.startswith("error: ") and option in err, err
    assert len(err.splitlines()) == 2 and err.splitlines()[1].startswith("hint: ")


def test_unknown_board_is_a_usage_error_everywhere():
    r = nanoml("validate", GESTURE, "--inputs", INPUTS, "--sim", "--board", "nope")
    assert r.returncode == 2 and "unknown board 'nope'" in r.stderr
    r = nanoml("inspect", GESTURE, "--board", "nope")
    assert r.returncode == 2 and "unknown board 'nope'" in r.stderr


def test_usage_error_with_json_is_a_json_document():
    rc = nanoml("build", GESTURE, "--no-compile", "--format", "zip", "--json")
    d = json.loads(rc.stdout)
    assert rc.returncode == 2 and d["exit_code"] == 2 and d["schema"] == "error/1"
    assert "'zip' is not one of" in d["error"]


def _options():
    """{command: {option name: click option}} of the real app."""
    import typer.main

    from nanoml.cli import app
    group = typer.main.get_command(app)
    return {name: {o: p for p in cmd.params for o in p.opts}
            for name, cmd in group.commands.items()}


SHORT = {"--board": "-b", "--runtime": "-r", "--port": "-p", "--input": "-i"}


def test_one_short_option_per_name():
    """`monitor -b`, `sim -b`, `profile -p` and the rest: the same letter everywhere."""
    opts = _options()
    seen = 0
    for cmd, names in opts.items():
        for long, short in SHORT.items():
            if long in names:
                seen += 1
                assert short in names[long].opts, f"nanoml {cmd} {long} lacks {short}"
    assert seen >= 15
    for cmd, letter in (("monitor", "-b"), ("sim", "-b"), ("profile", "-p")):
        assert letter in opts[cmd]


@pytest.mark.parametrize("cmd, option, choices", [
    ("build", "--input", "<serial|synthetic|imu|mic>"),
    ("build", "--format", "<platformio|arduino>"),
    ("flash", "--input", "<serial|synthetic|imu|mic>"),
    ("inspect", "--input", "<serial|synthetic|imu|mic>"),
    ("sim", "--input", "<synthetic|serial>"),
    ("convert", "--quantize", "<int8|float16|none>"),
    ("validate", "--reference", "<tflm|tflite>"),
])
def test_help_shows_the_choices(cmd, option, choices):
    r = nanoml(cmd, "--help", columns=200)
    line = next(x for x in r.stdout.splitlines() if re.match(rf"\s*(-\w, )?{option} ", x))
    assert choices in line, line


def test_old_option_names_still_work_but_are_not_shown():
    assert "--runs" not in nanoml("profile", "--help").stdout
    assert "--samples" not in nanoml("convert", "--help").stdout
    r = nanoml("profile", GESTURE, "--sim", "--runs", 2, "--no-record", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["latency"]["runs"] == 2
    r = nanoml("profile", GESTURE, "--sim", "--count", 3, "--no-record", "--json")
    assert json.loads(r.stdout)["latency"]["runs"] == 3


def test_every_count_and_limit_means_at_least_one():
    """--count and --limit are "how many"; 0 is refused by every command having them."""
    opts = _options()
    with_it = [(c, o) for c, names in opts.items() for o in ("--count", "--limit") if o in names]
    assert {c for c, _ in with_it} >= {"monitor", "sim", "profile", "validate", "convert"}
    for cmd, opt in with_it:
        args = [cmd, opt, "0"] + ([] if cmd == "monitor" else [GESTURE])
        rc, err = in_process(*args)
        assert rc == 2 and opt in err, (cmd, err)


# ---------------------------------------------------------------- progress

def _run_with_tty_stderr(*args, timeout: float = 120) -> tuple[int, str, str]:
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "nanoml", *map(str, args)], stdout=subprocess.PIPE,
                         stderr=slave, text=True)
    os.close(slave)
    chunks = []
    while True:
        r, _, _ = select.select([master], [], [], timeout)
        if not r:
            p.kill()
            break
        try:
            data = os.read(master, 65536)
        except OSError:                    # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    out = p.stdout.read()
    p.wait(timeout=30)
    os.close(master)
    return p.returncode, out, b"".join(chunks).decode("utf-8", "replace")


def test_validate_shows_progress_on_a_terminal_only():
    rc, out, err = _run_with_tty_stderr("validate", GESTURE, "--inputs", INPUTS, "--sim")
    assert rc == 0, err
    assert "running 32 input(s) on the virtual board" in err
    assert "PASS" in out and "running" not in out            # progress never on stdout
    r = nanoml("validate", GESTURE, "--inputs", INPUTS, "--sim")   # stderr is a pipe here
    assert r.returncode == 0 and r.stderr == ""


def test_profile_sim_shows_its_steps_and_json_stays_clean():
    rc, out, err = _run_with_tty_stderr("profile", GESTURE, "--sim", "--no-record", "--json")
    assert rc == 0
    json.loads(out)
    assert "starting the virtual board" not in err        # never with --json
    rc, out, err = _run_with_tty_stderr("profile", GESTURE, "--sim", "--no-record")
    assert rc == 0
    assert "starting the virtual board" in err


def test_progress_reports_reach_the_listener_from_any_thread():
    import threading

    from nanoml import progress
    progress.report("nobody listens")                     # no listener: nothing happens
    shown = []
    with progress.listening(shown.append) as p:
        t = threading.Thread(target=progress.report, args=("from a thread",))
        t.start()
        t.join()
        progress.detail("3 of 4")
        progress.line("Linking .pio/build/nano33ble_sense/firmware.elf")
    assert p.steps == ["from a thread"]
    assert shown[0] == "from a thread" and shown[1] == "from a thread: 3 of 4"
    assert len(shown) == 3 and shown[2].startswith("from a thread: ")
