"""Time `load()` and `inspect` on a model with many operators (issue 9: a
4,000-operator model took 99 s and 157 MB in inspect).

The model is built here: the sine example's first FULLY_CONNECTED layer (int8)
followed by N-1 copies of its 16x16 hidden layer, all sharing one weight and
one bias buffer, written with TFLM's generated schema (tflite_micro package).

Usage: python benchmarks/bench_reader.py [N=4000] [--profile]
"""

from __future__ import annotations

import copy
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "sine" / "sine_int8.tflite"


def build_chain(n_ops: int) -> bytes:
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    m = s.ModelT.InitFromPackedBuf(bytearray(SEED.read_bytes()), 0)
    sg = m.subgraphs[0]
    ops = sg.operators
    hidden = next(op for op in ops if len(sg.tensors[op.outputs[0]].shape) == 2
                  and list(sg.tensors[op.outputs[0]].shape)[-1] == 16
                  and sg.tensors[op.inputs[0]].shape[-1] == 16)
    first = ops[0]
    out_t = sg.tensors[hidden.outputs[0]]
    chain = [first]
    prev = first.outputs[0]
    for _ in range(n_ops - 1):
        t = copy.deepcopy(out_t)
        t.name = f"chain_{len(sg.tensors)}".encode()
        sg.tensors.append(t)
        op = copy.deepcopy(hidden)
        op.inputs = [prev, hidden.inputs[1], hidden.inputs[2]]
        op.outputs = [len(sg.tensors) - 1]
        chain.append(op)
        prev = op.outputs[0]
    sg.operators = chain
    sg.outputs = [prev]
    b = flatbuffers.Builder(1 << 20)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n_ops = int(args[0]) if args else 4000
    data = build_chain(n_ops)
    with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as f:
        f.write(data)
    path = f.name
    from nanoml.model.tflite import load
    t0 = time.perf_counter()
    model = load(path)
    t1 = time.perf_counter()
    print(f"model      {n_ops} operators, {len(model.main.tensors)} tensors, {len(data):,} bytes")
    print(f"load       {t1 - t0:.3f} s")
    cmd = [sys.executable, "-m", "nanoml", "inspect", path, "--json"]
    if "--profile" in sys.argv:
        cmd[1:1] = ["-m", "cProfile", "-s", "cumulative"]
    t2 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    t3 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if "--profile" in sys.argv:
        print("\n".join(p.stdout.splitlines()[-400:][:60]))
    print(f"inspect    {t3 - t2:.3f} s, exit {p.returncode}, max RSS {rss:.0f} MB "
          "(`nanoml inspect --json`, whole process)")
    Path(path).unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
