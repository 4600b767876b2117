"""Mutated models and the reference they are judged against (a test helper, not a test).

- `mutant_set(n, seed)`: deterministic mutants of small real models. Half are
  *structural* (a field of the model changed through TFLM's own generated schema
  object API: a tensor type, a dimension, an index, a quantization array, an
  opcode, an option, a buffer), half are *raw* (bytes changed outside the weight
  buffers, or the file truncated).
- `reference(data)`: what TFLM's host interpreter (the `tflite-micro` package)
  does with the bytes: allocate tensors and invoke once, in a forked child with a
  memory and time limit, so a crash is an outcome and not the end of the test run.
- `run_cli(args)`: the nanoml command line in a forked child (the parent has the
  modules imported already, so a run costs milliseconds, not an interpreter
  start-up), with a memory and time limit, its output captured.
"""

from __future__ import annotations

import copy
import os
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NANOML_SHARED", ROOT.parent / "shared"))

# Small models: mutants of these run in milliseconds through every command.
_SHARED_SEEDS = ["hello_world_int8.tflite", "hello_world_float.tflite",
                 "micro_speech_quantized.tflite", "keyword_scrambled.tflite",
                 "keyword_scrambled_8bit.tflite", "trained_lstm_int8.tflite"]
_EXAMPLE_SEEDS = ["examples/gesture/gesture_int8.tflite", "examples/sine/sine_int8.tflite"]

HOST_ARENA_BYTES = 8 * 1024 * 1024


def seed_models() -> list[Path]:
    out = [SHARED / "models" / n for n in _SHARED_SEEDS if (SHARED / "models" / n).exists()]
    out += [ROOT / p for p in _EXAMPLE_SEEDS if (ROOT / p).exists()]
    return out


# ---------------------------------------------------------------------------
# mutation

def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    return s


def _pack(model_t) -> bytes:
    import flatbuffers
    b = flatbuffers.Builder(1024)
    b.Finish(model_t.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


_INTS = [-(2 ** 31), -3, -1, 0, 1, 2, 3, 7, 255, 65535, 2 ** 16 + 1, 2 ** 31 - 1]


def _lst(x, default=None) -> list:
    """A schema object-API field (None, list or numpy array) as a list."""
    if x is None or len(x) == 0:
        return list(default or [])
    return [v.item() if hasattr(v, "item") else v for v in x]


def _pick_int(rng: random.Random, n: int | None = None) -> int:
    if n is not None and rng.random() < 0.4:
        return rng.choice([n, n + 1, n - 1, -1, -3])
    return rng.choice(_INTS) if rng.random() < 0.7 else rng.randint(-10, 300)


def _poke(obj, which: str, rng: random.Random, n: int) -> list:
    """Set one entry of the index list `obj.which` to a (mostly bad) index."""
    lst = _lst(getattr(obj, which), [0])
    lst[rng.randrange(len(lst))] = _pick_int(rng, n)
    setattr(obj, which, lst)
    return lst


def _structural(model_t, rng: random.Random) -> str:
    """Change one field of `model_t` in place; returns what was changed."""
    sgs = model_t.subgraphs or []
    sg = rng.choice(sgs) if sgs else None
    tensors = sg.tensors if sg and sg.tensors else []
    ops = sg.operators if sg and sg.operators else []
    kind = rng.choice(["type", "dim", "sg_io", "op_io", "opcode_index", "builtin", "version",
                       "quant", "buffer", "buffer_data", "option", "drop_op", "dup_op",
                       "variable", "metadata", "rank"])
    if kind == "type" and tensors:
        t = rng.choice(tensors)
        t.type = rng.choice([-1, 1, 2, 3, 4, 5, 6, 8, 10, 11, 13, 14, 15, 16, 17, 18, 19, 99, 127])
        return f"tensor {t.name!r} type={t.type}"
    if kind in ("dim", "rank") and tensors:
        t = rng.choice(tensors)
        shape = _lst(t.shape)
        if kind == "rank" or not shape:
            shape = shape + [rng.choice([1, 2, 3])] if rng.random() < 0.5 else shape[:-1]
        else:
            shape[rng.randrange(len(shape))] = rng.choice(
                [-1, -3, 0, 2 ** 31 - 1, 2 ** 16, 65536 * 3, rng.randint(2, 400)])
        t.shape = shape
        return f"tensor {t.name!r} shape={shape}"
    if kind == "sg_io" and sg is not None:
        which = "inputs" if rng.random() < 0.5 else "outputs"
        return f"subgraph {which}={_poke(sg, which, rng, len(tensors))}"
    if kind == "op_io" and ops:
        op = rng.choice(ops)
        which = rng.choice(["inputs", "outputs", "intermediates"])
        return f"operator {which}={_poke(op, which, rng, len(tensors))}"
    if kind == "opcode_index" and ops:
        op = rng.choice(ops)
        op.opcodeIndex = _pick_int(rng, len(model_t.operatorCodes or []))
        return f"operator opcodeIndex={op.opcodeIndex}"
    if kind == "builtin" and model_t.operatorCodes:
        oc = rng.choice(model_t.operatorCodes)
        oc.builtinCode = rng.choice([rng.randint(0, 210), 999, -1, 32])
        oc.deprecatedBuiltinCode = min(max(oc.builtinCode, 0), 127)
        return f"opcode builtin={oc.builtinCode}"
    if kind == "version" and model_t.operatorCodes:
        oc = rng.choice(model_t.operatorCodes)
        oc.version = rng.choice([0, -1, 2, 3, 4, 5, 9, 99, 2 ** 31 - 1])
        return f"opcode version={oc.version}"
    if kind == "quant" and tensors:
        t = rng.choice(tensors)
        q = t.quantization
        if q is None:
            q = t.quantization = _schema().QuantizationParametersT()
        what = rng.choice(["scale_empty", "scale_bad", "zp_len", "zp_val", "dim", "scale_extra"])
        if what == "scale_empty":
            q.scale = []
        elif what == "scale_bad":
            q.scale = [rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e-45, 1e38])] * \
                max(1, len(_lst(q.scale)))
        elif what == "zp_len":
            q.zeroPoint = _lst(q.zeroPoint, [0]) + [0, 0]
        elif what == "zp_val":
            q.zeroPoint = [rng.choice([-129, 128, 300, -(2 ** 40), 2 ** 40])] * \
                max(1, len(_lst(q.zeroPoint)))
        elif what == "dim":
            q.quantizedDimension = rng.choice([-1, 1, 3, 4, 7, 2 ** 31 - 1])
        else:
            q.scale = _lst(q.scale, [0.1]) + [0.1, 0.2, 0.3]
        return f"tensor {t.name!r} quantization {what}"
    if kind == "buffer" and tensors:
        t = rng.choice(tensors)
        t.buffer = _pick_int(rng, len(model_t.buffers or []))
        return f"tensor {t.name!r} buffer={t.buffer}"
    if kind == "buffer_data" and model_t.buffers:
        full = [b for b in model_t.buffers if b.data is not None and len(b.data)]
        if full:
            b = rng.choice(full)
            n = len(b.data)
            b.data = b.data[: rng.choice([0, 1, n // 2, max(n - 1, 0)])]
            return f"buffer truncated to {len(b.data)}"
    if kind == "option" and ops:
        op = rng.choice(ops)
        o = op.builtinOptions
        if o is None or rng.random() < 0.2:
            op.builtinOptions = None
            op.builtinOptionsType = 0
            return "operator options removed"
        fields = [k for k, v in vars(o).items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if fields:
            k = rng.choice(fields)
            setattr(o, k, rng.choice([0, -1, 2 ** 31 - 1, 99, 7, rng.randint(-4, 12)]))
            return f"operator option {k}={getattr(o, k)}"
    if kind == "drop_op" and ops:
        i = rng.randrange(len(ops))
        del ops[i]
        return f"operator {i} removed"
    if kind == "dup_op" and ops:
        i = rng.randrange(len(ops))
        ops.insert(i, copy.deepcopy(ops[i]))
        return f"operator {i} duplicated"
    if kind == "variable" and tensors:
        t = rng.choice(tensors)
        t.isVariable = not t.isVariable
        return f"tensor {t.name!r} isVariable={t.isVariable}"
    if kind == "metadata":
        s = _schema()
        m = s.MetadataT()
        m.name = rng.choice(["OfflineMemoryAllocation", "min_runtime_version", "junk"])
        m.buffer = _pick_int(rng, len(model_t.buffers or []))
        model_t.metadata = list(model_t.metadata or []) + [m]
        if rng.random() < 0.5 and model_t.buffers is not None:
            b = s.BufferT()
            b.data = [rng.randrange(256) for _ in range(rng.choice([0, 3, 12, 16, 40]))]
            model_t.buffers.append(b)
            m.buffer = len(model_t.buffers) - 1
        return f"metadata {m.name} buffer={m.buffer}"
    return "unchanged"


def _weight_ranges(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the buffers' data (mutating weights is not interesting)."""
    sys.path.insert(0, str(ROOT))
    from nanoml.model.flatbuf import Buf
    buf = Buf(data)
    out = []
    for b in buf.root().tables(4):
        start, n = b.vector_info(0)
        if n:
            out.append((start, start + n))
    return out


def _raw(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    if rng.random() < 0.1:
        n = rng.randrange(8, len(b))
        return bytes(b[:n]), f"truncated to {n}"
    try:
        weights = _weight_ranges(data)
    except Exception:  # noqa: BLE001 - a seed the helper cannot walk: mutate anywhere
        weights = []

    def in_weights(p: int) -> bool:
        return any(s <= p < e for s, e in weights)

    done = []
    for _ in range(rng.choice([1, 1, 2, 4])):
        for _try in range(50):
            p = rng.randrange(8, len(b))
            if not in_weights(p):
                break
        if rng.random() < 0.5 and p + 4 <= len(b):
            v = rng.choice(_INTS) & 0xFFFFFFFF
            b[p:p + 4] = v.to_bytes(4, "little")
        else:
            b[p] = rng.randrange(256)
        done.append(p)
    return bytes(b), f"bytes at {done}"


def mutant_set(n: int, seed: int = 0, models: list[Path] | None = None) -> list[tuple[str, bytes]]:
    """`n` deterministic mutants: (description, bytes)."""
    models = models if models is not None else seed_models()
    if not models:
        raise RuntimeError("no seed models found")
    s = _schema()
    rng = random.Random(seed)
    parsed = {}
    out = []
    while len(out) < n:
        path = rng.choice(models)
        data = path.read_bytes()
        if rng.random() < 0.5:
            if path not in parsed:
                parsed[path] = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
            m = copy.deepcopy(parsed[path])
            what = [_structural(m, rng) for _ in range(rng.choice([1, 1, 1, 2]))]
            try:
                mutated = _pack(m)
            except Exception:  # noqa: BLE001 - a field the packer cannot encode
                continue
            out.append((f"{path.name}: {'; '.join(what)}", mutated))
        else:
            mutated, what = _raw(data, rng)
            out.append((f"{path.name}: {what}", mutated))
    return out


# ---------------------------------------------------------------------------
# child processes

def _limit_memory(mem_mb: int) -> None:
    lim = mem_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (lim, lim))


def _wait(pid: int, timeout: float) -> tuple[int | None, int | None, bool]:
    """(exit code, signal, timed out) of child `pid`."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFSIGNALED(status):
                return None, os.WTERMSIG(status), False
            return os.WEXITSTATUS(status), None, False
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None, None, True
        time.sleep(0.002)


@dataclass
class Ref:
    status: str            # "ok", "refused", "crashed", "timeout"
    detail: str = ""


def reference(data: bytes, timeout: float = 20.0, mem_mb: int = 2048,
              arena_size: int = HOST_ARENA_BYTES) -> Ref:
    """TFLM's host interpreter on `data`: AllocateTensors() and one Invoke()."""
    from tflite_micro.python.tflite_micro import runtime  # imported once, before the fork
    with tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                os.dup2(err.fileno(), 2)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                _limit_memory(mem_mb)
                ip = runtime.Interpreter.from_bytes(data, arena_size=arena_size)
                ip.invoke()
                code = 0
            except BaseException as e:  # noqa: BLE001 - refusal is an outcome
                try:
                    os.write(2, f"{type(e).__name__}: {e}".encode()[:2000])
                except Exception:  # noqa: BLE001
                    pass
            finally:
                os._exit(code)
        code, sig, timed_out = _wait(pid, timeout)
        err.seek(0)
        detail = err.read()[-2000:].decode("utf-8", "replace").strip()
    if timed_out:
        return Ref("timeout", f"no answer in {timeout} s")
    if sig is not None:
        return Ref("crashed", f"{signal.Signals(sig).name}; {detail[-300:]}")
    return Ref("ok" if code == 0 else "refused", detail[-300:])


@dataclass
class CliRun:
    args: list[str]
    exit_code: int | None
    stdout: str
    stderr: str
    signal: int | None
    timed_out: bool

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr


def run_cli(args: list[str], timeout: float = 60.0, mem_mb: int = 2048,
            env: dict | None = None, cwd: str | Path | None = None) -> CliRun:
    """`nanoml ARGS` in a forked child (see the module docstring)."""
    import nanoml.cli  # noqa: F401 - imported in the parent so children start at once
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                sys.stdin = open(0, "r", closefd=False)
                sys.stdout = open(1, "w", closefd=False)
                sys.stderr = open(2, "w", closefd=False)
                if env:
                    os.environ.update(env)
                if cwd is not None:
                    os.chdir(cwd)
                _limit_memory(mem_mb)
                sys.argv = ["nanoml", *args]
                try:
                    nanoml.cli.main()
                    code = 0
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                except BaseException:  # noqa: BLE001 - what Python itself would print
                    traceback.print_exc()
                    code = 1
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                except BaseException:  # noqa: BLE001
                    pass
                os._exit(code)
        code, sig, timed_out = _wait(pid, timeout)
        out.seek(0)
        err.seek(0)
        return CliRun(list(args), code, out.read().decode("utf-8", "replace"),
                      err.read().decode("utf-8", "replace"), sig, timed_out)
