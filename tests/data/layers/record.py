"""Record what a layer-dump device sends for one input frame, from the
virtual board (`nanoml sim --input serial --layers`, run as its own process,
read through its pseudo-terminal like a board): every byte from opening the
port to the frame's `res` line. tests/test_layer_link.py replays the
recording over a pseudo-terminal as a fake board. No board was available when
it was recorded; see README.md here.

    .venv/bin/python tests/data/layers/record.py                  # re-record gesture_frame1.*
    .venv/bin/python tests/data/layers/record.py --measure MODEL  # link cost per layer (no file)
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
GESTURE = ROOT / "examples" / "gesture" / "gesture_int8.tflite"
INPUTS = ROOT / "examples" / "gesture" / "inputs.npy"


def gesture_payload() -> bytes:
    """Sample 0 of examples/gesture/inputs.npy, quantized with the model's input scale."""
    import numpy as np

    from nanoml.model.tflite import load
    t = load(GESTURE).input_tensors[0]
    x = np.load(INPUTS)[0].astype(np.float64)
    q = np.clip(np.round(x / t.quant.scale[0]) + t.quant.zero_point[0], -128, 127)
    return q.astype(np.int8).tobytes()


def record(model: Path, payload: bytes, frame: int = 1, timeout: float = 60.0) -> bytes:
    """Every byte the sim sends from the port's opening to the `res` of `frame`."""
    from nanoml.serial.link import BoardLink
    from nanoml.serial.protocol import Message
    from nanoml.sim.process import SimProcess
    sim = SimProcess.spawn(model, input="serial", rate_hz=0, extra_args=["--layers", "--no-link"])
    raw = bytearray()
    try:
        with BoardLink.open(sim.port) as link:
            read = link.ser.read

            def tap(n):                       # keep every byte the link reads
                data = read(n)
                raw.extend(data)
                return data
            link.ser.read = tap
            link.wait_hello(timeout=10)
            link.seq = frame - 1
            link.send(payload)
            end = time.monotonic() + timeout
            for p in link.messages(timeout):
                if isinstance(p, Message) and p.type == "res" and p.fields.get("frame") == frame:
                    break
                if time.monotonic() > end:
                    raise SystemExit("no res within the timeout")
    finally:
        sim.stop()
    return bytes(raw)


def measure(model: Path) -> None:
    """Link cost of one dump of `model` through the sim's pty: bytes per layer."""
    import numpy as np

    from nanoml.serial.layers import request_layers
    from nanoml.serial.link import BoardLink
    from nanoml.sim.process import SimProcess
    sim = SimProcess.spawn(model, input="serial", rate_hz=0, extra_args=["--layers", "--no-link"])
    try:
        with BoardLink.open(sim.port) as link:
            hello = link.wait_hello(timeout=10)
            n = sum(int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize for t in hello["in"])
            t0 = time.monotonic()
            run = request_layers(link, bytes(n))
            dt = time.monotonic() - t0
    finally:
        sim.stop()
    from nanoml.serial.protocol import LAYER_CHUNK_BYTES
    per = []
    for d in run:
        nb = len(d.raw or b"")
        chunks = -(-nb // LAYER_CHUNK_BYTES)
        per.append((d.op, d.name, nb, chunks))
    tensor_bytes = sum(p[2] for p in per)
    print(f"{Path(model).name}: {len(run)} outputs, {tensor_bytes:,} tensor bytes, "
          f"{run.link_bytes:,} link bytes ({run.link_bytes / max(tensor_bytes, 1):.2f} per tensor "
          f"byte), {dt:.2f} s through the pty")
    for op, name, nb, chunks in per:
        print(f"  {op:3d} {name:20s} {nb:7,d} B {chunks:4d} chunks")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--measure", type=Path)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if a.measure:
        measure(a.measure)
        return 0
    import nanoml
    from nanoml.model.tflite import load
    payload = gesture_payload()
    data = record(GESTURE, payload)
    (HERE / "gesture_frame1.nmlog").write_bytes(data)
    meta = {"model": str(GESTURE.relative_to(ROOT)), "sha256": load(GESTURE).sha256,
            "payload_hex": payload.hex(), "frame": 1,
            "recorded_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "nanoml_version": nanoml.__version__,
            "source": "nanoml sim --input serial --layers (virtual board; no board available)",
            "bytes": len(data)}
    (HERE / "gesture_frame1.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"recorded {len(data):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
