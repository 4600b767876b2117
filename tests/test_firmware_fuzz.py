"""Fuzz: mutated models through `nanoml build --no-compile --json`, judged against TFLM.

Each mutant (tests/mutants.py) is built into a project folder of its own by the
command line in a forked child with a time and memory limit, and run by TFLM's
host interpreter (allocate + invoke, in a child too). The campaign holds when no
build ends in an internal error (exit 70), a traceback, a signal or a timeout, and
no build succeeds (exit 0) for a model the interpreter refuses or crashes on. A
project that is written holds an arena the board can hold, and nothing is written
outside its folder.

NANOML_FUZZ_BUILD_MUTANTS sets the count (the default keeps the test under about
two minutes on a 2-core machine), NANOML_FUZZ_SEED the seed.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mutants import mutant_set, reference, run_cli, seed_models

MUTANTS = int(os.environ.get("NANOML_FUZZ_BUILD_MUTANTS", "400"))
SEED = int(os.environ.get("NANOML_FUZZ_SEED", "17"))
RAM_FOR_ARENA = 262_144 - 44_552      # nano33ble_sense: RAM minus the empty sketch's


def _variant(i: int) -> list[str]:
    """Vary the input source and the format, so more of build's checks run."""
    return [["--input", "synthetic"], [], ["--format", "arduino", "--input", "synthetic"],
            ["--profile", "--input", "synthetic"]][i % 4]


def _build_one(job):
    i, (what, data), folder = job
    model = os.path.join(folder, f"m{i}.tflite")
    out = os.path.join(folder, f"p{i}")
    with open(model, "wb") as f:
        f.write(data)
    run = run_cli(["build", model, "--no-compile", "--json", "--out", out, *_variant(i)],
                  timeout=30, mem_mb=1024)
    ref = reference(data, timeout=20)
    arena = None
    if run.exit_code == 0:
        arena = json.loads(run.stdout)["spec"]["arena"]["bytes"]
    shutil.rmtree(out, ignore_errors=True)
    os.unlink(model)
    return what, run, ref, arena


def test_build_on_mutants(tmp_path, monkeypatch):
    import faulthandler
    if not seed_models():
        pytest.fail("no seed models (examples/ is part of the repository)")
    if faulthandler.is_enabled():     # it would print a stack for every child TFLM kills
        faulthandler.disable()
        monkeypatch.setattr(faulthandler, "enable", faulthandler.enable)
    # one build in this process first: the forked children inherit the imports and
    # the compiled templates instead of redoing them
    from nanoml.firmware.build import BuildOptions, generate
    generate(BuildOptions(model=seed_models()[0], out=tmp_path / "warm", input="synthetic"))
    work = tmp_path / "work"
    work.mkdir()
    start = time.monotonic()
    jobs = [(i, m, str(work)) for i, m in enumerate(mutant_set(MUTANTS, SEED))]
    counts = collections.Counter()
    bad = collections.defaultdict(list)
    with ThreadPoolExecutor(2) as pool:
        for what, run, ref, arena in pool.map(_build_one, jobs):
            counts[(run.exit_code, ref.status)] += 1
            problem = ("timeout" if run.timed_out else f"signal {run.signal}"
                       if run.signal is not None else "exit 70" if run.exit_code == 70
                       else "traceback" if run.traceback else None)
            if problem:
                bad[problem].append(f"{what}: {(run.stdout + run.stderr)[-300:]}")
            if run.exit_code == 0 and ref.status != "ok":
                bad[f"built, but TFLM {ref.status}"].append(f"{what}: {ref.detail[-200:]}")
            if arena is not None and not 0 < arena <= RAM_FOR_ARENA:
                bad["arena beyond the board"].append(f"{what}: {arena}")
    seconds = time.monotonic() - start
    print(f"\nbuild --no-compile on {len(jobs)} mutants in {seconds:.0f} s: "
          + ", ".join(f"exit {rc}/TFLM {st}: {n}" for (rc, st), n in sorted(counts.items(),
                                                                            key=str)))
    assert not bad, {k: v[:5] for k, v in bad.items()}
    assert sorted(os.listdir(work)) == []            # every project stayed in its folder
    built = sum(n for (rc, _), n in counts.items() if rc == 0)
    refused = sum(n for (rc, _), n in counts.items() if rc == 2)
    assert built > MUTANTS // 10 and refused > MUTANTS // 10, counts
