"""The JSON every command prints is the JSON its docs describe.

Each docs/<command>.md holds its schema as a table after a marker line
`<!-- json-schema: NAME -->` (| key | type | meaning |). This test reads those
tables, runs the real command and checks both ways: every documented key is there
with its documented type, and every key printed is documented (objects whose keys
are listed are closed; an object listed without sub-keys is free-form). So the test
fails when the output or the docs change alone. Key syntax: `a`, `a.b`, `a[].b`
(each element of list `a`); type: `str`, `int`, `float` (also takes an int),
`bool`, `null`, `object`, `list`, `any`, alternatives with `|`; a trailing `?`
means the key may be absent. The envelope (docs/README.md) is part of every schema.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GESTURE = ROOT / "examples" / "gesture" / "gesture_int8.tflite"
INPUTS = ROOT / "examples" / "gesture" / "inputs.npy"

MARKER = re.compile(r"<!--\s*json-schema:\s*(.+?)\s*-->")     # alone on its line
TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
         "null": (type(None),), "object": (dict,), "list": (list,)}


# ---------------------------------------------------------------- the docs' tables

def schemas() -> dict[str, dict[str, tuple[set[str], bool]]]:
    """{schema name: {key path: (types, optional)}} from every docs/*.md."""
    found: dict[str, dict] = {}
    for md in sorted(DOCS.glob("*.md")):
        lines = md.read_text().splitlines()
        for i, line in enumerate(lines):
            m = MARKER.fullmatch(line.strip())
            if not m:
                continue
            name = m.group(1)
            assert name not in found, f"{md.name}: schema {name} documented twice"
            found[name] = _table(lines[i + 1:], f"{md.name} {name}")
    return found


def _table(lines: list[str], where: str) -> dict:
    rows: dict[str, tuple[set[str], bool]] = {}
    started = False
    for line in lines:
        s = line.strip()
        if not s.startswith("|"):
            if started:
                break
            if s:
                raise AssertionError(f"{where}: the table must follow the marker")
            continue
        started = True
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", s)[1:-1]]
        if len(cells) < 2 or set(cells[0]) <= {"-", ":", " "} or cells[0] == "key":
            continue
        keys = re.findall(r"`([^`]+)`", cells[0])
        assert keys, f"{where}: no `key` in row {s!r}"
        ty = cells[1].replace("\\|", "|").replace("`", "").strip()
        optional = ty.endswith("?")
        types = {t.strip() for t in ty.rstrip("?").split("|")}
        assert types <= set(TYPES) | {"any"}, f"{where}: unknown type {ty!r} for {keys}"
        for k in keys:
            assert k not in rows, f"{where}: {k} listed twice"
            rows[k] = (types, optional)
    assert rows, f"{where}: empty schema table"
    return rows


def schema(name: str) -> dict:
    all_ = schemas()
    assert name in all_, f"no `<!-- json-schema: {name} -->` table in docs/"
    return {**all_["envelope"], **all_[name]}


# ---------------------------------------------------------------- the check

def check(doc: dict, rows: dict, where: str = "") -> None:
    """Every documented key present with its type; nothing undocumented."""
    problems: list[str] = []
    _check_object(doc, "", rows, problems)
    assert not problems, f"{where}: output and docs disagree:\n  " + "\n  ".join(problems)


def _children(prefix: str, rows: dict) -> dict[str, str]:
    """{child name: its full path} of the documented object at `prefix`."""
    out = {}
    for path in rows:
        rest = path[len(prefix):] if path.startswith(prefix) else ""
        if rest and re.fullmatch(r"[^.\[\]]+", rest):
            out[rest] = path
    return out


def _check_object(obj: dict, prefix: str, rows: dict, problems: list[str]) -> None:
    children = _children(prefix, rows)
    for key in obj:
        if key not in children:
            problems.append(f"`{prefix}{key}` is printed but not documented")
    for name, path in children.items():
        types, optional = rows[path]
        if name not in obj:
            if not optional:
                problems.append(f"`{path}` is documented but not printed")
            continue
        _check_value(obj[name], path, types, rows, problems)


def _check_value(v, path: str, types: set[str], rows: dict, problems: list[str]) -> None:
    if "any" not in types:
        ok = any(isinstance(v, TYPES[t]) and not (t in ("int", "float") and isinstance(v, bool))
                 for t in types)
        if not ok:
            problems.append(f"`{path}` is {type(v).__name__} ({v!r:.60}), documented {'|'.join(sorted(types))}")
            return
    if isinstance(v, dict) and _children(path + ".", rows):
        _check_object(v, path + ".", rows, problems)
    if isinstance(v, list) and _children(path + "[].", rows):
        for i, item in enumerate(v):
            if not isinstance(item, dict):
                problems.append(f"`{path}[{i}]` is not an object")
                continue
            _check_object(item, path + "[].", rows, problems)


# ---------------------------------------------------------------- the real commands

def run(*args, timeout: float = 300, cwd=None) -> tuple[int, list[dict]]:
    env = {**os.environ, "COLUMNS": "200"}
    p = subprocess.run([sys.executable, "-m", "nanoml", *map(str, args), "--json"],
                       capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    docs = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, docs


def only(args, **kw) -> dict:
    rc, docs = run(*args, **kw)
    assert len(docs) == 1, docs
    assert docs[0]["exit_code"] == rc, (rc, docs[0])
    return docs[0]


def test_the_tables_parse_and_name_their_schema():
    s = schemas()
    assert {"envelope", "error/1", "inspect/2", "boards/1", "build/1", "profile/2",
            "validate/1", "validate-layers/1", "monitor/1 summary", "sim/1 start", "sim/1 summary",
            "convert/1", "flash/1", "ports/1", "features/1", "capture/1 record",
            "capture/1 export"} <= set(s)


@pytest.mark.parametrize("args, name", [
    (["inspect", GESTURE], "inspect/2"),
    (["boards"], "boards/1"),
    (["profile", GESTURE, "--estimate"], "profile/2"),
    (["validate", GESTURE, "--inputs", INPUTS, "--sim", "--limit", 4], "validate/1"),
    (["validate", GESTURE, "--layers", "--sim", "--limit", 2], "validate-layers/1"),
    (["ports"], "ports/1"),
])
def test_one_document_commands(args, name):
    d = only(args)
    assert d["schema"] == name and d["ok"] is True
    check(d, schema(name), " ".join(map(str, args[:1] + args[2:3])))


def test_inspect_with_problems(tmp_path):
    """A model that cannot run (a custom op): the problem entries are checked too."""
    from test_cli_vocabulary import _custom_op_model
    d = only(["inspect", _custom_op_model(tmp_path / "custom.tflite", "MyOp")])
    assert d["exit_code"] == 1 and d["ok"] is False and d["problems"]
    check(d, schema("inspect/2"), "inspect (cannot run)")


def test_build_no_compile(tmp_path):
    d = only(["build", GESTURE, "--no-compile", "-o", tmp_path / "fw"])
    assert d["schema"] == "build/1" and d["compiled"] is False
    check(d, schema("build/1"), "build --no-compile")


def test_profile_sim(tmp_path):
    d = only(["profile", GESTURE, "--sim", "--count", 3, "--no-record"], cwd=tmp_path)
    assert d["source"] == "sim"
    check(d, schema("profile/2"), "profile --sim")


def test_monitor_sim_summary():
    rc, docs = run("monitor", "--sim", GESTURE, "--sim-rate", 50, "--count", 3)
    assert rc == 0
    summary = docs[-1]
    assert summary["type"] == "summary" and summary["schema"] == "monitor/1"
    check(summary, schema("monitor/1 summary"), "monitor --sim summary")
    assert all("schema" not in d for d in docs[:-1])       # records are the protocol's


def test_sim_start_and_summary():
    rc, docs = run("sim", GESTURE, "--count", 3, "--rate", 50, "--no-link")
    assert rc == 0 and len(docs) == 2
    check(docs[0], schema("sim/1 start"), "sim start line")
    check(docs[1], schema("sim/1 summary"), "sim summary line")


def test_capture_record_and_export(tmp_path):
    """capture --sim (a WAV source, and a fake board that drops frames: the gap keys
    filled), then --export edge-impulse."""
    import wave

    from capture_fakes import start_fake_board
    src = tmp_path / "s.wav"
    with wave.open(str(src), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(range(256)) * 250)
    out = tmp_path / "data"
    d = only(["capture", "--sim", "--source", src, "--label", "a", "--count", 2, "--length", "0.5",
              "--out", out, "--countdown", 0, "--fast"])
    assert d["schema"] == "capture/1" and d["ok"] is True and len(d["takes"]) == 2
    check(d, schema("capture/1 record"), "capture --sim")
    fake = start_fake_board("drop", source=src, sensor="mic", after_takes=0, lines=(1,))
    try:
        d = only(["capture", "--port", fake.port, "--label", "b", "--length", "0.5", "--out", out,
                  "--countdown", 0])
    finally:
        fake.stop()
    assert d["exit_code"] == 1 and d["takes"][0]["gaps"] > 0
    check(d, schema("capture/1 record"), "capture with gaps")
    d = only(["capture", "--export", "edge-impulse", "--out", out])
    assert d["ok"] is True and len(d["files"]) == 2
    check(d, schema("capture/1 export"), "capture --export")


def test_errors():
    d = only(["inspect", ROOT / "no-such.tflite"])
    assert d["exit_code"] == 2 and d["ok"] is False
    check(d, schema("error/1"), "inspect error")
    d = only(["inspect", GESTURE, "--board", "nope"])
    check(d, schema("error/1"), "bad --board")
    d = only(["build", GESTURE, "--format", "zip"])        # a usage error of click's
    assert d["exit_code"] == 2
    check(d, schema("error/1"), "usage error")


def test_flash_without_a_board_is_an_error_document(tmp_path):
    """A real upload needs a board: here only the error document is checked."""
    rc, docs = run("flash", GESTURE, "--port", tmp_path / "no-such-port", "--out", tmp_path / "fw",
                   timeout=600)
    assert rc != 0 and docs, docs
    assert docs[-1]["exit_code"] == rc and docs[-1]["ok"] is False
    assert docs[-1]["schema"] in ("flash/1", "error/1")
    check(docs[-1], schema(docs[-1]["schema"]), "flash without a board")


def test_convert(tmp_path):
    pytest.importorskip("tensorflow")
    src = ROOT / "examples" / "gesture" / "gesture.keras"
    if not src.exists():
        pytest.skip(f"{src} not present")
    d = only(["convert", src, "-o", tmp_path / "g.tflite", "--calib", INPUTS, "--limit", 8],
             timeout=900)
    assert d["schema"] == "convert/1" and d["ok"] is True
    check(d, schema("convert/1"), "convert")


# ---------------------------------------------------------------- the checker itself

def test_the_checker_catches_drift_both_ways():
    rows = {"a": ({"int"}, False), "b": ({"object"}, False), "b.c": ({"str"}, False),
            "l": ({"list"}, False), "l[].x": ({"float"}, False), "o": ({"int"}, True),
            "free": ({"object"}, False)}
    good = {"a": 1, "b": {"c": "s"}, "l": [{"x": 1.5}, {"x": 2}], "free": {"any": 1}}
    check(good, rows)
    for bad in ({**good, "new": 1},                       # printed, not documented
                {k: v for k, v in good.items() if k != "a"},   # documented, not printed
                {**good, "a": "1"},                       # wrong type
                {**good, "a": True},                      # bool is not an int
                {**good, "b": {"c": "s", "d": 1}},        # nested key not documented
                {**good, "l": [{"x": 1.0, "y": 2}]}):     # list element key not documented
        with pytest.raises(AssertionError):
            check(bad, rows)


# ---------------------------------------------------------------- no NaN / Infinity tokens

def _strict(text: str):
    def refuse(token):
        raise AssertionError(f"bare {token} in the JSON output")
    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_null(tmp_path, capsys):
    import numpy as np

    from nanoml.commands._common import emit_json
    emit_json({"a": float("nan"), "b": [float("inf"), -float("inf")], "c": np.float32("nan"),
               "d": np.array([1.5, np.nan]), "e": (2.5,)}, "test/1", 0)
    d = _strict(capsys.readouterr().out)
    assert (d["a"], d["b"], d["c"], d["d"], d["e"]) == (None, [None, None], None, [1.5, None], [2.5])
    assert d["schema"] == "test/1" and d["exit_code"] == 0 and d["ok"] is True


def test_a_model_with_nan_scales_gives_strict_json(tmp_path):
    """A tensor whose quantization scale is NaN (a mutant of the campaign): whatever
    inspect and profile --estimate make of it, their JSON has no NaN token."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    m = s.ModelT.InitFromPackedBuf(GESTURE.read_bytes(), 0)
    for t in m.subgraphs[0].tensors:
        if t.quantization is not None and t.quantization.scale is not None:
            t.quantization.scale = [float("nan")] * len(t.quantization.scale)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    p = tmp_path / "nan_scale.tflite"
    p.write_bytes(bytes(b.Output()))
    for args in (["inspect", p], ["profile", p, "--estimate"]):
        proc = subprocess.run([sys.executable, "-m", "nanoml", *map(str, args), "--json"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode != 70 and "Traceback" not in proc.stderr, proc.stderr
        lines = proc.stdout.splitlines()
        assert len(lines) == 1, proc.stdout
        assert _strict(lines[0])["exit_code"] == proc.returncode
