"""Raw sample capture throughput (issue 12): what the protocol's encoding costs
per sample, and how fast audio goes through a pseudo-terminal.

1. Encoding: bytes on the wire per sample and lines per second for the
   microphone (16 kHz int16 mono) and the IMU (9 float32 channels at 119 Hz),
   with the `smp` frame as sent (base64) and, for comparison, the same frame
   with the samples as hex digits (what the `in` frames use).
2. Decoder: pre-encoded frames through the host's StreamDecoder + TakeAssembler
   (no pty): samples per second.
3. Device: the firmware's encoder (CaptureSession) compiled for the Cortex-M4,
   instructions per frame counted under qemu-arm (when both tools are there).
4. End to end: 60 s of audio from the virtual sensor board (as fast as the host
   reads) over a real pty into nanoml.capture.link: samples per second and the
   factor over real time; every take checked bit-exact against the source.

The board's own USB CDC link was NOT measured (no board here): the figure for it
is the USB full-speed bulk ceiling, stated as a ceiling, not a measurement.

Usage: python benchmarks/bench_capture.py [SECONDS=60]
"""

from __future__ import annotations

import sys
import tempfile
import time
import wave
from pathlib import Path

MIC_RATE = 16000


def _frames(samples, sensor: str, hexed: bool = False) -> list[bytes]:
    import numpy as np
    from nanoml.serial.protocol import crc16, encode_line
    from nanoml.sim.capture import samples_per_frame
    ch = 1 if samples.ndim == 1 else samples.shape[1]
    spf = samples_per_frame(sensor, ch)
    out = []
    for seq, i in enumerate(range(0, len(samples), spf)):
        block = samples[i:i + spf]
        data = block.astype("<i2" if sensor == "mic" else "<f4").tobytes()
        if hexed:      # the same fields, the samples as hex digits
            body = (b"~nm smp take=1 seq=%d i=%d n=%d d=%s t_us=%d"
                    % (seq, i, len(block), data.hex().upper().encode(), i * 62))
            out.append(b"%s*%04X\r\n" % (body, crc16(body)))
        else:
            out.append(encode_line("smp", {"take": 1, "seq": seq, "i": i, "n": len(block),
                                           "d": data, "t_us": i * 62}))
    return out, spf, np


def encoding_costs(seconds: float) -> list[str]:
    import numpy as np
    rng = np.random.default_rng(0)
    rows = []
    mic = rng.integers(-32768, 32768, int(seconds * MIC_RATE)).astype(np.int16)
    imu = rng.normal(size=(int(seconds * 119), 9)).astype(np.float32)
    for name, data, sensor, rate in (("mic 16 kHz int16", mic, "mic", MIC_RATE),
                                     ("imu 9 ch float32 @119 Hz", imu, "imu", 119)):
        for hexed in (False, True):
            lines, spf, _ = _frames(data, sensor, hexed)
            nbytes = sum(map(len, lines))
            per = nbytes / len(data)
            rows.append(f"  {name:26s} {'hex' if hexed else 'base64':6s}: {per:6.2f} B/sample, "
                        f"{spf:3d} samples/line, {rate / spf:7.1f} lines/s, "
                        f"{per * rate / 1000:6.1f} KB/s at the sensor's rate "
                        f"(raw {data[:1].nbytes * rate / 1000:.1f} KB/s)")
    return rows


def decoder_rate(seconds: float) -> str:
    import numpy as np
    from nanoml.capture.link import Block, TakeAssembler
    from nanoml.serial.protocol import encode_line
    from nanoml.serial.stream import StreamDecoder
    mic = np.random.default_rng(1).integers(-32768, 32768, int(seconds * MIC_RATE)).astype(np.int16)
    lines, spf, _ = _frames(mic, "mic")
    head = encode_line("cst", {"take": 1, "sensor": "mic", "rate": MIC_RATE, "ch": 1,
                               "n": len(mic), "fmt": "i16", "names": ["mic"],
                               "units": ["pcm16"], "spf": spf, "board": "b", "rev": "rev1",
                               "fw": "f"})
    tail = encode_line("cend", {"take": 1, "samples": len(mic), "frames": len(lines), "drop": 0,
                                "why": "done"})
    stream = head + b"".join(lines) + tail
    t0 = time.perf_counter()
    dec, asm, got = StreamDecoder(), TakeAssembler(), 0
    for k in range(0, len(stream), 4096):
        for p in dec.feed(stream[k:k + 4096]):
            for ev in asm.feed(p):
                if isinstance(ev, Block):
                    got += len(ev.samples)
    dt = time.perf_counter() - t0
    assert got == len(mic)
    return (f"  decoder (StreamDecoder + TakeAssembler, no pty): {got / dt:,.0f} samples/s "
            f"= {got / dt / MIC_RATE:.1f}x real time for 16 kHz audio")


def end_to_end(seconds: float) -> str:
    import numpy as np
    from nanoml.capture.link import open_link
    src = np.random.default_rng(2).integers(-32768, 32768, int(seconds * MIC_RATE)).astype(np.int16)
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "bench.wav"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(MIC_RATE)
            w.writeframes(src.astype("<i2").tobytes())
        take_n = 10 * MIC_RATE
        with open_link(sim=True, source=wav, fast=True) as link:
            t0 = time.perf_counter()
            got = 0
            for k in range(len(src) // take_n):
                take = link.record("mic", samples=take_n)
                assert np.array_equal(take.samples(), src[k * take_n:(k + 1) * take_n])
                got += take.end.received
            dt = time.perf_counter() - t0
    return (f"  pty end to end (virtual board -> pty -> capture link, {got // MIC_RATE} s of "
            f"audio in {got // take_n} takes, bit-exact): {dt:.2f} s, {got / dt:,.0f} samples/s "
            f"= {got / dt / MIC_RATE:.1f}x real time")


_ENC = r"""
#include "nanoml_capture.h"
static unsigned g_total = 0;
static void sink(const char*, size_t n, void*) { g_total += (unsigned)n; }
static char g_line[nanoml::kCaptureLineBytes];
int main(int argc, char**) {
  const nanoml::CaptureConfig cfg = {nanoml::kSensorMic, 16000, "nano33ble_sense", "rev1", "fw",
                                     false};
  nanoml::CaptureSession s(cfg, g_line, sizeof(g_line), sink, nullptr);
  const nanoml::Command c = {nanoml::kCmdCap, 1, nanoml::kSensorMic, 16000, 1, 0, false};
  s.command(c);
  int16_t pcm[60];
  uint32_t x = 1;
  for (int i = 0; i < 60; ++i) { x = x * 1664525u + 1013904223u; pcm[i] = (int16_t)(x >> 16); }
  const int frames = argc > 1 ? FRAMES : 0;
  for (int f = 0; f < frames * 2; ++f) s.push_pcm16(pcm, 60, 0);
  return (int)(g_total & 0x7f);
}
"""
_START = """  .syntax unified
  .thumb
  .global _start
  .thumb_func
_start:
  ldr r0, [sp]
  add r1, sp, #4
  bl main
  movs r7, #1
  svc 0
"""


def device_encode_cost(frames: int = 10) -> str:
    """Instructions the firmware's CaptureSession spends per full mic frame (120
    samples: copy, base64, fields, CRC-16), counted under qemu-arm (one
    instruction per translation block), built with the board's compiler flags."""
    import shutil
    import subprocess
    if not (shutil.which("arm-none-eabi-g++") and shutil.which("qemu-arm")):
        return "  device encoding cost: not measured (needs arm-none-eabi-g++ and qemu-arm)"
    root = Path(__file__).resolve().parent.parent / "sketches"
    counts = []
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "enc.cpp").write_text(_ENC.replace("FRAMES", str(frames)))
        (Path(d) / "start.S").write_text(_START)
        subprocess.run(["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=softfp",
                        "-mfpu=fpv4-sp-d16", "-Os", "-std=gnu++14", "-fno-rtti",
                        "-fno-exceptions", f"-I{root / 'firmware'}", f"-I{root / 'common'}",
                        "-nostartfiles", "-static", "start.S", "enc.cpp", "-o", "enc.elf"],
                       cwd=d, check=True, capture_output=True)
        for args in ([], ["x"]):
            log = Path(d) / "log.txt"
            subprocess.run(["qemu-arm", "-cpu", "max", "-singlestep", "-d", "exec,nochain",
                            "-D", str(log), "./enc.elf", *args], cwd=d, capture_output=True)
            with open(log, "rb") as f:
                counts.append(sum(chunk.count(b"Trace") for chunk in iter(lambda: f.read(1 << 20),
                                                                           b"")))
            log.unlink()
    per_frame = (counts[1] - counts[0]) / frames
    per_s = per_frame * MIC_RATE / 120
    return (f"  device encoding (CaptureSession, Cortex-M4 code under qemu-arm): "
            f"{per_frame:,.0f} instructions per 120-sample frame = {per_frame / 120:.0f} per "
            f"sample = {per_s / 1e6:.2f} M instructions/s at 16 kHz "
            f"(~{100 * per_s / 64e6:.0f}% of the 64 MHz core at 1 instruction per cycle; "
            "USB driver time not included)")


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    print(f"raw sample capture, {seconds:g} s of signal")
    print("encoding (bytes per sample include the line's fields, checksum and CRLF):")
    rows = encoding_costs(seconds)
    for r in rows:
        print(r)
    need = rows[0].split("lines/s,")[1].split("KB/s")[0].strip()
    print(device_encode_cost())
    print(decoder_rate(seconds))
    print(end_to_end(seconds))
    print("  board USB CDC link: NOT MEASURED (no board here). Ceiling, not a measurement: "
          "USB full speed 12 Mbit/s, bulk 64-byte packets, at most 19 per 1 ms frame = "
          f"1,216 KB/s; the mic stream needs {need} KB/s of it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
