"""Fuzz: mutated models through `nanoml inspect --json`, each judged against TFLM.

Every mutant (tests/mutants.py: structural changes through TFLM's schema object API
and raw byte changes, of small real models) goes through the command line in a forked
child with a time and a memory limit, and through TFLM's host interpreter (allocate +
invoke, also in a child). The campaign holds when there is no internal error (exit
70), no traceback, no death by signal, no timeout, and no model that inspect calls
runnable (exit 0) which the interpreter refuses or crashes on.

NANOML_FUZZ_MUTANTS sets the count (default below: measured to keep this test under
about 3 minutes on a 2-core machine); NANOML_FUZZ_SEED the seed.
"""

from __future__ import annotations

import collections
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mutants import mutant_set, reference, run_cli, seed_models

MUTANTS = int(os.environ.get("NANOML_FUZZ_MUTANTS", "2000"))
SEED = int(os.environ.get("NANOML_FUZZ_SEED", "9"))
WORKERS = 2
CLI_TIMEOUT_S = 30
CLI_MEMORY_MB = 1024


WARM = ("multiprocessing.connection", "numpy", "rich.console", "rich.table",
        "tflite_micro.python.tflite_micro.runtime", "nanoml.cli", "nanoml.memory",
        "nanoml.model.inspect", "nanoml.model.verdict", "nanoml.sim.isolated")


def _warm() -> None:
    """Import in the parent what every forked child would otherwise import again (a
    speed-up only: a module this version does not have is simply not warmed)."""
    import importlib
    import importlib.util
    for name in WARM:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def _one(job):
    i, (what, data), folder = job
    path = os.path.join(folder, f"m{i}.tflite")
    with open(path, "wb") as f:
        f.write(data)
    run = run_cli(["inspect", path, "--json"], timeout=CLI_TIMEOUT_S, mem_mb=CLI_MEMORY_MB)
    ref = reference(data, timeout=20)
    os.unlink(path)
    return what, run, ref


@pytest.fixture
def no_faulthandler():
    """pytest's faulthandler would print a stack from every child that TFLM crashes."""
    import faulthandler
    was = faulthandler.is_enabled()
    faulthandler.disable()
    yield
    if was:
        faulthandler.enable()


def test_inspect_agrees_with_tflm_on_mutants(tmp_path, no_faulthandler):
    if not seed_models():
        pytest.fail("no seed models (examples/ is part of the repository)")
    _warm()
    start = time.monotonic()
    jobs = [(i, m, str(tmp_path)) for i, m in enumerate(mutant_set(MUTANTS, SEED))]
    outcomes = collections.Counter()
    bad = collections.defaultdict(list)
    with ThreadPoolExecutor(WORKERS) as pool:
        for what, run, ref in pool.map(_one, jobs):
            if run.timed_out:
                bad["timeout"].append(what)
            elif run.signal is not None:
                bad[f"signal {run.signal}"].append(what)
            elif run.exit_code == 70:
                bad["exit 70"].append(f"{what}: {run.stdout[-300:]}")
            if run.traceback:
                bad["traceback"].append(f"{what}: {run.stderr[-300:]}")
            if run.exit_code == 0 and ref.status != "ok":
                bad[f"runnable but TFLM {ref.status}"].append(f"{what}: {ref.detail[-200:]}")
            if run.exit_code in (0, 1):
                d = json.loads(run.stdout)            # valid JSON (no NaN tokens)
                assert d["can_run"] is (run.exit_code == 0), what
            outcomes[(run.exit_code, ref.status)] += 1
    seconds = time.monotonic() - start
    summary = ", ".join(f"exit {k[0]}/TFLM {k[1]}: {n}" for k, n in sorted(outcomes.items(),
                                                                          key=str))
    print(f"\n{len(jobs)} mutants in {seconds:.0f} s: {summary}")
    assert not bad, {k: v[:5] for k, v in bad.items()}
    # the campaign exercised every outcome that matters
    assert sum(n for (rc, _), n in outcomes.items() if rc == 0) > 0
    assert sum(n for (rc, _), n in outcomes.items() if rc == 1) > 0
    assert sum(n for (rc, _), n in outcomes.items() if rc == 2) > 0
