"""TFLM's host interpreter never takes nanoml down (issue 9): every use of it runs in
a worker process (nanoml.sim.isolated), so a model or an arena that crashes or
hangs the interpreter ends the command with one line (exit 2), and `--timeout`
bounds the whole command (exit 1).

The fuzz test sends mutated models (tests/mutants.py) through `profile --sim`, and
a few through `sim` and `validate --sim`, each CLI run in a forked child with a
time and memory limit, each model also run by TFLM's host interpreter in a child
(`reference`). Set NANOML_SIM_FUZZ=N for more (or fewer) mutants.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLES, shared_path
from mutants import _pack, _schema, mutant_set, reference, run_cli

from nanoml.model.tflite import ModelError, load_bytes

FUZZ_N = int(os.environ.get("NANOML_SIM_FUZZ", "200"))
SINE = EXAMPLES / "sine" / "sine_int8.tflite"


@pytest.fixture(scope="module", autouse=True)
def _warm_imports():
    """Import what the commands import lazily, once, so each forked CLI run starts
    at once (run_cli forks this process)."""
    from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    import nanoml.cli  # noqa: F401
    import nanoml.model.inspect  # noqa: F401
    import nanoml.profile.run  # noqa: F401
    import nanoml.profile.simboard  # noqa: F401
    import nanoml.validate.run  # noqa: F401


def _problems(run, what: str, json_out: bool = True) -> list[str]:
    """What is wrong with one CLI run, whatever its exit code."""
    out = []
    if run.timed_out:
        out.append(f"{what}: hung (killed after the time limit)")
    if run.signal is not None:
        out.append(f"{what}: killed by {signal.Signals(run.signal).name}")
    if run.exit_code == 70:
        out.append(f"{what}: internal error: {run.stdout[-300:]} {run.stderr[-300:]}")
    if run.traceback:
        out.append(f"{what}: traceback: {run.stderr[-500:]}")
    if json_out and run.exit_code is not None and run.exit_code != 0:
        try:                     # an error document with one line, or a result (validate FAIL)
            doc = json.loads(run.stdout.strip().splitlines()[-1])
            if doc.get("exit_code") != run.exit_code:
                out.append(f"{what}: exit {run.exit_code}, the document says {doc}")
            elif "error" in doc and (not doc["error"] or "\n" in doc["error"]):
                out.append(f"{what}: the error is not one line: {doc}")
        except (ValueError, IndexError, AttributeError):
            out.append(f"{what}: exit {run.exit_code} without a JSON document: {run.stdout[-300:]}")
    return out


def _inputs_file(data: bytes, path: Path) -> Path | None:
    """Zero inputs shaped like the model's (None when the reader rejects it)."""
    try:
        m = load_bytes(data, str(path))
    except ModelError:
        return None
    arrays = {}
    for i, t in enumerate(m.input_tensors):
        shape = [max(1, min(int(d), 64)) for d in t.shape] or [1]
        try:
            arrays[f"in{i}"] = np.zeros([2] + shape, dtype=np.dtype(t.dtype))
        except TypeError:
            return None
    np.savez(path, **arrays)
    return path


def _sine_with_empty_input() -> bytes:
    """sine_int8 with its input tensor's first dimension set to 0: a model that TFLM's
    host interpreter crashes on (SIGSEGV) during the zero-input invoke."""
    s = _schema()
    m = s.ModelT.InitFromPackedBuf(bytearray(SINE.read_bytes()), 0)
    sg = m.subgraphs[0]
    t = sg.tensors[sg.inputs[0]]
    t.shape = [0] + list(t.shape[1:])
    return _pack(m)


# ------------------------------------------------------------------ the fuzz test

def test_mutants_through_profile_sim_sim_and_validate_sim(tmp_path):
    t0 = time.monotonic()
    mutants = mutant_set(FUZZ_N, seed=9)
    counts: Counter = Counter()
    refs: Counter = Counter()
    bad: list[str] = []
    few = 0
    for i, (what, data) in enumerate(mutants):
        p = tmp_path / f"m{i}.tflite"
        p.write_bytes(data)
        ref = reference(data)
        refs[ref.status] += 1
        r = run_cli(["profile", str(p), "--sim", "--json", "--no-record", "--runs", "1",
                     "--timeout", "20"], timeout=40, mem_mb=2048)
        counts[r.exit_code] += 1
        bad += _problems(r, f"profile --sim [{what}]")
        if r.exit_code == 0 and ref.status != "ok":
            bad.append(f"profile --sim [{what}]: exit 0 but the host interpreter "
                       f"{ref.status} ({ref.detail})")
        if i % 8 == 0 and few < 20:             # a few through `sim` and `validate --sim`
            few += 1
            s = run_cli(["sim", str(p), "--count", "2", "--rate", "0", "--no-link", "--json",
                         "--timeout", "20"], timeout=40)
            bad += _problems(s, f"sim [{what}]")
            inputs = _inputs_file(data, tmp_path / f"m{i}.npz")
            if inputs is not None:
                v = run_cli(["validate", str(p), "--sim", "--inputs", str(inputs), "--json",
                             "--timeout", "20"], timeout=40)
                bad += _problems(v, f"validate --sim [{what}]")
    took = time.monotonic() - t0
    print(f"\n{len(mutants)} mutants in {took:.0f} s; profile --sim exit codes "
          f"{dict(counts)}; host interpreter {dict(refs)}; {few} also through sim/validate")
    assert not bad, "\n".join(bad[:20])
    assert counts[0] and counts[2], counts       # both paths were exercised


# ------------------------------------------------------------------ direct regressions

def test_host_interpreter_crash_is_an_error_not_a_signal():
    """A real crash of the host interpreter (a 100-byte arena: SIGSEGV in TFLM)
    ends as an error in the caller, which keeps running."""
    from nanoml.sim.isolated import HostInterpreter, HostInterpreterError
    with pytest.raises(HostInterpreterError) as e:
        HostInterpreter(SINE.read_bytes(), 100, 1, 1)
    assert e.value.status == "crashed" and "SIGSEGV" in e.value.message
    assert e.value.exit_code == 2
    with HostInterpreter(SINE.read_bytes(), 64 * 1024, 1, 1) as ip:   # and life goes on
        outs, us = ip.run([np.zeros((1, 1), np.int8)])
        assert outs[0].shape == (1, 1) and us >= 0


def test_a_worker_that_overruns_its_step_is_killed():
    """A step that takes longer than allowed (here: person_detect's start-up, which
    takes tenths of a second, against 20 ms) ends as "hung", the worker killed; the
    command's deadline ends it as TimedOut (exit 1) instead."""
    from nanoml.sim.deadline import Deadline, TimedOut
    from nanoml.sim.isolated import HostInterpreter, HostInterpreterError
    data = shared_path("models", "person_detect.tflite").read_bytes()
    before = _children()
    with pytest.raises(HostInterpreterError) as e:
        HostInterpreter(data, 1 << 20, 1, 1, step_timeout=0.02)
    assert e.value.status == "hung" and "did not finish" in e.value.message
    with pytest.raises(TimedOut) as t:
        HostInterpreter(data, 1 << 20, 1, 1, deadline=Deadline(0.02))
    assert t.value.exit_code == 1 and "timed out after 0.02 s" in t.value.message
    assert _children() <= before                 # both workers killed and reaped


def _children() -> set[int]:
    """This process's child processes (zombies included)."""
    me, out = os.getpid(), set()
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me:
            out.add(int(d.name))
    return out


def test_sim_arena_too_small_names_the_arena_needed():
    from nanoml.sim.isolated import probe
    r = run_cli(["sim", str(SINE), "--arena", "100", "--count", "1", "--no-link", "--json"],
                timeout=60)
    assert r.signal is None and not r.timed_out and r.exit_code == 2, r
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    m = re.search(r"needs at least ([\d,]+) B", doc["error"])
    assert m, doc
    need = int(m.group(1).replace(",", ""))
    assert f"--arena {need}" in doc["hint"]
    data = SINE.read_bytes()                   # the figure is the real minimum
    assert probe(data, need, 1, 1) == "ok" and probe(data, need - 16, 1, 1) != "ok"


def test_sim_arena_too_small_on_a_shared_model_text_output():
    model = shared_path("models", "hello_world_int8.tflite")
    r = run_cli(["sim", str(model), "--arena", "100", "--count", "1", "--no-link"], timeout=60)
    assert r.signal is None and r.exit_code == 2, r
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("error: an arena of 100 B is too small") and len(lines) == 2


@pytest.mark.parametrize("args", [
    ["profile", "{m}", "--sim", "--json", "--no-record", "--runs", "1"],
    ["sim", "{m}", "--count", "1", "--no-link", "--json"],
    ["validate", "{m}", "--sim", "--inputs", "{i}", "--json"],
    ["monitor", "--sim", "{m}", "--json", "--count", "1"],
], ids=["profile-sim", "sim", "validate-sim", "monitor-sim"])
def test_a_model_that_crashes_the_interpreter(tmp_path, args):
    data = _sine_with_empty_input()
    assert reference(data).status == "crashed"            # it does crash TFLM
    model = tmp_path / "crash.tflite"
    model.write_bytes(data)
    inputs = tmp_path / "in.npy"
    np.save(inputs, np.zeros((2, 1), np.float32))
    r = run_cli([a.format(m=model, i=inputs) for a in args], timeout=90)
    assert not _problems(r, " ".join(args)), r
    assert r.exit_code == 2, r
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    try:
        load_bytes(data, str(model))
    except ModelError:                # the reader refuses it: fine, but say so
        assert "crashed" not in doc["error"], doc
        return
    assert "crashed (SIGSEGV)" in doc["error"] and "nanoml inspect" in doc["hint"], doc


def _elapsed(args, limit=60):
    t = time.monotonic()
    r = run_cli(args, timeout=limit)
    return r, time.monotonic() - t


def test_sim_timeout_bounds_the_command():
    r, took = _elapsed(["sim", str(SINE), "--rate", "2", "--count", "1000", "--no-link",
                        "--json", "--timeout", "1.5"])
    assert r.exit_code == 1 and not r.timed_out, r
    assert "timed out after 1.5 s" in json.loads(r.stdout.strip().splitlines()[-1])["error"]
    assert took < 1.5 + 1.5, took


def test_profile_sim_timeout_bounds_the_whole_command():
    """person_detect takes several seconds on the virtual board (start-up, arena
    bisection, runs): --timeout 1 ends it after about 1 s, not only the read."""
    model = shared_path("models", "person_detect.tflite")
    r, took = _elapsed(["profile", str(model), "--sim", "--json", "--no-record", "--runs",
                        "50", "--timeout", "1"])
    assert r.exit_code == 1 and not r.timed_out, r
    assert "timed out after 1 s" in json.loads(r.stdout.strip().splitlines()[-1])["error"]
    assert took < 1 + 1.5, took


def test_validate_sim_timeout_bounds_the_whole_command(tmp_path):
    model = shared_path("models", "person_detect.tflite")
    inputs = tmp_path / "in.npy"
    np.save(inputs, np.zeros((200, 96, 96, 1), np.int8))
    r, took = _elapsed(["validate", str(model), "--sim", "--inputs", str(inputs), "--json",
                        "--timeout", "1.5"])
    assert r.exit_code == 1 and not r.timed_out, r
    assert "timed out after 1.5 s" in json.loads(r.stdout.strip().splitlines()[-1])["error"]
    assert took < 1.5 + 1.5, took
