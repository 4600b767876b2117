"""TFLM's host interpreter (the `tflite-micro` package) in a child process.

The interpreter is C++ that trusts the model: on a malformed model, or an arena
too small for it, it can kill its process (SIGSEGV, SIGABRT, SIGFPE, SIGBUS),
hang (LSTM models on a too-small arena) or allocate without bound. So nanoml
never runs it in its own process. `HostInterpreter` forks a worker that owns
one interpreter and serves requests over a pipe (set inputs + invoke, reset,
allocation report) for as long as the caller keeps it; `probe` is a one-shot
worker (allocate + invoke, then exit). A worker that dies, hangs past its time
or runs out of memory becomes one `HostInterpreterError` (exit 2) that says what
happened and what to do; a worker that outlives the command's `--timeout`
(`Deadline`) becomes `TimedOut` (exit 1).

On start-up the worker proves the model once: allocate the tensors with the
given arena and invoke on all-zero inputs (then reset the variable tensors),
so a model that crashes the interpreter fails before anything is announced.
See docs/sim.md ("The process boundary").
"""

from __future__ import annotations

import os
import signal
import time

from ..errors import InputError
from .deadline import Deadline

# Longest one step (start-up: allocation + the check invoke; or one invoke) may
# take when no --timeout is tighter. A step that takes longer has hung.
STEP_TIMEOUT_S = 60.0
# Address space a worker may use beyond what it inherits from the parent and its
# arena (the interpreter's own allocations, the output tensors).
MEMORY_BUDGET_BYTES = 1 << 30
# Largest arena handed to the host interpreter (the board has 256 KB of RAM).
MAX_ARENA_BYTES = 256 << 20

ALLOCATING = "allocating this model's tensors"
INVOKING = "running the model (invoke)"
CHECK_INVOKING = "running the model once on zero inputs (invoke)"


class HostInterpreterError(InputError):
    """The host interpreter refused, crashed on, hung on or ran out of memory on the model."""

    def __init__(self, message: str, hint: str | None = None, status: str = "refused",
                 step: str = ALLOCATING):
        super().__init__(message, hint)
        self.status = status          # "refused" | "crashed" | "hung" | "memory"
        self.step = step


_HINT = "check the model with `nanoml inspect`"


def signal_name(sig: int) -> str:
    """SIGSEGV for 11 (what a child process died of)."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _tail(fd: int, limit: int = 4096) -> str:
    """Last non-empty line the interpreter printed on its stderr (a file)."""
    try:
        size = os.fstat(fd).st_size
        text = os.pread(fd, limit, max(0, size - limit)).decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return (s.splitlines()[0] if s else type(e).__name__)[:200]


# ------------------------------------------------------------------ the worker

def _limit_memory(arena_size: int) -> int | None:
    """Cap the worker's address space (what it inherited + its arena + a budget)."""
    try:
        import resource
        with open("/proc/self/statm") as f:
            inherited = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, ImportError):
        return None
    want = inherited + arena_size + MEMORY_BUDGET_BYTES
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY and soft <= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    except (ValueError, OSError):
        return None
    return want


def _die_with_parent() -> None:
    try:                          # Linux: PR_SET_PDEATHSIG, so no worker outlives nanoml
        import ctypes             # (imported by the parent before the fork)
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _worker(conn, err_fd: int, data: bytes, arena_size: int, n_inputs: int, n_outputs: int,
            serve: bool, runtime, preserve: bool = False) -> None:
    """The child: allocate, check-invoke, answer, then serve requests until EOF."""
    import numpy as np
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN if sig == signal.SIGINT else signal.SIG_DFL)
    _die_with_parent()
    import faulthandler
    faulthandler.disable()                   # a crash here is reported by the parent
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)                      # the parent's stdout carries its results
    os.dup2(err_fd, 2)                       # TFLM's error reports, for the message
    limit = _limit_memory(arena_size + getattr(runtime, "EXTRA_MEMORY_BYTES", 0))

    def failure(e: BaseException) -> tuple:
        if isinstance(e, MemoryError):
            mib = f" (limit {limit >> 20} MiB)" if limit else ""
            return ("memory", f"ran out of memory{mib}")
        why = _first_line(e)
        tflm = _tail(err_fd)
        return ("refused", f"{why}; {tflm}" if tflm and tflm not in why else why)

    t0 = time.monotonic()
    ip = None
    try:
        if preserve:          # every tensor kept after invoke (no arena reuse): layer dumps
            ip = runtime.Interpreter.from_bytes(
                data, arena_size=arena_size,
                intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
        else:
            ip = runtime.Interpreter.from_bytes(data, arena_size=arena_size)
        ins = [ip.get_input_details(i) for i in range(n_inputs)]
        outs = [ip.get_output_details(i) for i in range(n_outputs)]
        conn.send(("progress", CHECK_INVOKING))        # the parent names the right step
        for i, d in enumerate(ins):
            ip.set_input(np.zeros(tuple(int(x) for x in d["shape"]), dtype=d["dtype"]), i)
        ip.invoke()
        ip.reset()
        conn.send(("ok", ins, outs, time.monotonic() - t0))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        conn.send(failure(e) + (ALLOCATING if ip is None else CHECK_INVOKING,))
        return
    alone: dict = {}                           # key -> interpreter of run_alone()'s models
    while serve:
        try:
            req = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if req[0] == "run":
                for i, arr in enumerate(req[1]):
                    ip.set_input(arr, i)
                t = time.perf_counter_ns()
                ip.invoke()
                us = (time.perf_counter_ns() - t) // 1000
                conn.send(("ok", [np.array(ip.get_output(i)) for i in range(len(outs))], us))
            elif req[0] == "tensors":          # preserve=True: tensors of the last invoke
                conn.send(("ok", [np.array(ip.GetTensor(int(i), 0)["tensor_data"])
                                  for i in req[1]]))
            elif req[0] == "reset":
                ip.reset()
                conn.send(("ok",))
            elif req[0] == "alone":            # another (single-operator) model, same worker
                key, data2, arena2, arrays, wanted = req[1:]
                if key not in alone:
                    alone[key] = runtime.Interpreter.from_bytes(
                        data2, arena_size=arena2,
                        intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
                sub = alone[key]
                sub.reset()
                for i, arr in enumerate(arrays):
                    sub.set_input(arr, i)
                sub.invoke()
                conn.send(("ok", [np.array(sub.GetTensor(int(i), 0)["tensor_data"])
                                  for i in wanted]))
            elif req[0] == "allocations":
                start = os.fstat(err_fd).st_size
                ip.print_allocations()
                end = os.fstat(err_fd).st_size
                conn.send(("ok", os.pread(err_fd, end - start, start).decode("utf-8", "replace")))
            else:
                return
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            conn.send(failure(e) + (INVOKING,))


# ------------------------------------------------------------------ the parent

class HostInterpreter:
    """One model in TFLM's host interpreter, in a worker process (see the module doc).

    `.inputs` / `.outputs`: the interpreter's tensor details (dicts); `.start_seconds`:
    how long allocation + the check invoke took. `run(arrays)` -> (outputs, us).
    `preserve`: keep every tensor (TFLM's kPreserveAllTensors; `tensors()` reads them).
    `runtime`: a module with the `tflite_micro` runtime's surface (default: that one;
    nanoml.validate.tflite_runtime wraps TensorFlow Lite's interpreter)."""

    def __init__(self, data: bytes, arena_size: int, n_inputs: int, n_outputs: int, *,
                 deadline: Deadline | float | None = None, step_timeout: float = STEP_TIMEOUT_S,
                 start_timeout: float | None = None, serve: bool = True,
                 preserve: bool = False, runtime=None):
        import ctypes  # noqa: F401 - the worker's imports, done before the fork
        import faulthandler  # noqa: F401
        import multiprocessing
        import resource  # noqa: F401
        import tempfile
        import threading

        import numpy  # noqa: F401
        if runtime is None:
            from tflite_micro.python.tflite_micro import runtime
        self._pid = None
        if not 0 < arena_size <= MAX_ARENA_BYTES:
            raise InputError(f"arena of {arena_size:,} B for the host interpreter: out of range",
                             f"use 1 .. {MAX_ARENA_BYTES:,} B")
        self.deadline = Deadline.of(deadline)
        self.step_timeout = step_timeout
        self.arena_size = arena_size
        self._lock = threading.Lock()
        self._err = tempfile.TemporaryFile(prefix="nanoml-tflm-")
        parent, child = multiprocessing.Pipe()
        self._pid = os.fork()
        if self._pid == 0:                                     # the worker
            try:
                parent.close()
                _worker(child, self._err.fileno(), data, arena_size, n_inputs, n_outputs, serve,
                        runtime, preserve)
            finally:
                os._exit(0)
        child.close()
        self._conn = parent
        reply = self._reply(ALLOCATING, start_timeout or step_timeout)
        _, self.inputs, self.outputs, self.start_seconds = reply
        if not serve:
            self.close()

    # -- requests ----------------------------------------------------------
    def run(self, arrays: list) -> tuple[list, int]:
        """Set the inputs, invoke; (output arrays, host microseconds of invoke())."""
        _, outs, us = self._call(("run", list(arrays)), INVOKING)
        return outs, int(us)

    def tensors(self, indices: list[int]) -> list:
        """Subgraph 0's tensors `indices` after the last run() (needs preserve=True:
        without it TFLM reuses the arena and intermediate tensors are overwritten)."""
        return self._call(("tensors", [int(i) for i in indices]), INVOKING)[1]

    def reset(self) -> None:
        self._call(("reset",), INVOKING)

    def run_alone(self, key, data: bytes, arena_size: int, arrays: list,
                  wanted: list[int]) -> list:
        """Another model (`data`, kept in the worker under `key`) from a reset state on
        `arrays`: its subgraph-0 tensors `wanted` (validate --layers' single operators)."""
        sent = getattr(self, "_alone_keys", set())
        self._alone_keys = sent | {key}
        return self._call(("alone", key, None if key in sent else data, arena_size,
                           list(arrays), [int(i) for i in wanted]), INVOKING)[1]

    def allocations(self) -> str:
        """What TFLM's RecordingMicroAllocator prints (its allocation report)."""
        return self._call(("allocations",), INVOKING)[1]

    def _call(self, request: tuple, step: str) -> tuple:
        with self._lock:
            if self._pid is None:
                raise HostInterpreterError("the host interpreter's worker was closed",
                                           status="refused", step=step)
            try:
                self._conn.send(request)
            except (OSError, ValueError):
                pass                           # it died: _reply says how
            return self._reply(step, self.step_timeout)

    def _reply(self, step: str, timeout: float) -> tuple:
        wait = self.deadline.left(timeout)
        end = time.monotonic() + wait
        while True:
            try:
                ready = self._conn.poll(max(0.0, end - time.monotonic()))
                reply = self._conn.recv() if ready else None
            except (EOFError, OSError):
                ready, reply = True, None
            if reply is None or reply[0] != "progress":
                break
            step = reply[1]                    # the worker moved on to the next step
        if reply is not None and reply[0] == "ok":
            return reply
        if not ready:                          # hung, or the command's time is up
            self._kill()
            if self.deadline.expired:
                raise self.deadline.error(step)
            raise HostInterpreterError(
                f"the host TFLM interpreter did not finish {step} within {wait:g} s (it hangs "
                "on this model or this arena; the board would likely hang too)",
                _HINT, status="hung", step=step)
        if reply is not None:                  # ("refused" | "memory", why, step)
            self._kill()
            status, why, step = reply
            if status == "memory":
                raise HostInterpreterError(
                    f"the host TFLM interpreter {why} while {step}",
                    _HINT + " (its tensors may be far larger than the board's RAM)",
                    status="memory", step=step)
            raise HostInterpreterError(
                f"the host TFLM interpreter cannot run this model ({why})",
                _HINT + " (unsupported or custom ops, or a malformed model?)",
                status="refused", step=step)
        sig = self._reap()                     # the worker died
        tflm = _tail(self._err.fileno())
        said = f" (it printed: {tflm})" if tflm else ""
        if sig == signal.SIGKILL:
            what = "was killed (SIGKILL), probably out of memory,"
        elif sig is not None:
            what = f"crashed ({signal_name(sig)})"
        else:
            what = "exited unexpectedly"
        raise HostInterpreterError(
            f"the host TFLM interpreter {what} while {step}{said}; the board would likely "
            "hard-fault too", _HINT, status="crashed", step=step)

    # -- lifetime ----------------------------------------------------------
    def _reap(self) -> int | None:
        """Wait for the dead worker; its signal (None if it exited)."""
        pid, self._pid = self._pid, None
        self._close_files()
        if pid is None:
            return None
        _, status = os.waitpid(pid, 0)
        return os.WTERMSIG(status) if os.WIFSIGNALED(status) else None

    def _kill(self) -> None:
        if self._pid is not None:
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._reap()

    def _close_files(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        """Stop the worker (it exits when its pipe closes; killed if it does not)."""
        pid, self._pid = self._pid, None
        if pid is not None:
            self._close_files()
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                time.sleep(0.002)
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        err = getattr(self, "_err", None)
        if err is not None:
            err.close()

    def __enter__(self) -> "HostInterpreter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def probe(data: bytes, arena_size: int, n_inputs: int, n_outputs: int, *,
          deadline: Deadline | float | None = None, timeout: float = STEP_TIMEOUT_S) -> str:
    """Allocate + invoke once in a one-shot worker: "ok", "refused", "crashed", "hung"
    or "memory". Raises TimedOut when `deadline` passes first."""
    try:
        HostInterpreter(data, arena_size, n_inputs, n_outputs, deadline=deadline,
                        step_timeout=timeout, serve=False)
    except HostInterpreterError as e:
        return e.status
    return "ok"


ARENA_STEP = 16


def host_arena_bisect(data: bytes, hi: int, step: int = ARENA_STEP,
                      probe_timeout: float = STEP_TIMEOUT_S, *, lo: int = 0,
                      deadline: Deadline | float | None = None,
                      n_inputs: int | None = None, n_outputs: int | None = None,
                      hi_seconds: float | None = None, hint: int | None = None) -> int | None:
    """Smallest multiple of `step` in (lo, hi] with which the host interpreter
    allocates and invokes the model (each try a `probe` in its own worker); None if
    `hi` itself fails. `hi_seconds`: how long a known-good start at `hi` took (then
    `hi` is not probed again). A probe that takes much longer than the good one
    counts as a failure (a too-small arena can hang TFLM: LSTM models). `hint`: a
    likely figure (the arena the interpreter reported using at `hi`): the search
    starts there and widens by half until it brackets the answer (fewer probes)."""
    if n_inputs is None or n_outputs is None:
        from ..model.tflite import load_bytes
        main = load_bytes(data).main
        n_inputs, n_outputs = len(main.inputs), len(main.outputs)
    deadline = Deadline.of(deadline)

    def ok(size: int, timeout: float) -> bool:
        return probe(data, size, n_inputs, n_outputs, deadline=deadline,
                     timeout=timeout) == "ok"

    if hi_seconds is None:
        t0 = time.monotonic()
        if not ok(hi, probe_timeout):
            return None
        hi_seconds = time.monotonic() - t0
    probe_timeout = min(probe_timeout, max(2.0, 20 * hi_seconds))
    lo = max(0, lo) // step * step
    best = hi                 # invariant: best works, lo fails (or is 0)
    guess = -(-hint // step) * step if hint else 0
    if lo < guess < best:                 # bracket the answer around the hint
        if ok(guess, probe_timeout):
            best, g = guess, guess - step     # often the answer: nothing below works
            while g > lo:
                if not ok(g, probe_timeout):
                    lo = g
                    break
                best, g = g, g * 2 // 3 // step * step
        else:
            lo, g = guess, -(-(guess * 3 // 2) // step) * step
            while g < best:
                if ok(g, probe_timeout):
                    best = g
                    break
                lo, g = g, -(-(g * 3 // 2) // step) * step
    while best - lo > step:
        mid = (lo + best) // 2 // step * step
        if mid <= lo:
            break
        if ok(mid, probe_timeout):
            best = mid
        else:
            lo = mid
    return best
