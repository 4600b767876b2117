"""Firmware footprint estimate: will the model fit the board?

flash = empty-sketch baseline (board profile)
      + TFLM core code (runtime profile: no-ops program minus an empty program)
      + code of exactly the model's ops (see `ops_code_bytes`)
      + nanoml's own firmware code (protocol, input source; NANOML_GLUE_FLASH)
      + the model flatbuffer
ram   = empty-sketch baseline RAM + tensor arena + nanoml's buffers (NANOML_GLUE_RAM)

Per-op code sizes come from a Cortex-M4 build of the runtime library (each op
added alone to an empty resolver). Ops share helper code (quantization utils,
kernel_util), so increments do not simply add up: every op after the largest
one is assumed to share up to `shared_helper_bytes` of its increment with code
already linked. Measured on the shared models this is within about 2 KB of the
real TFLM code size for the whole op set. Ops with no measured size get
`unknown_op_bytes` (a deliberately generous figure), and the estimate says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .boards import Board
from .runtimes import Runtime

NANOML_GLUE_FLASH = 6_000   # protocol encoder/parser, input source, main loop
NANOML_GLUE_RAM = 1_024     # line buffers of the protocol
DEFAULT_SHARED_HELPER_BYTES = 3_200
DEFAULT_UNKNOWN_OP_BYTES = 12_000


@dataclass
class Footprint:
    flash_bytes: int
    ram_bytes: int
    flash_parts: dict
    ram_parts: dict
    fits_flash: bool
    fits_ram: bool
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"flash_bytes": self.flash_bytes, "ram_bytes": self.ram_bytes,
                "flash_parts": self.flash_parts, "ram_parts": self.ram_parts,
                "fits": {"flash": self.fits_flash, "ram": self.fits_ram}, "notes": self.notes}


def ops_code_bytes(runtime: Runtime, ops: list[str]) -> tuple[int, list[str]]:
    """Estimated TFLM kernel code for a set of builtin ops, and ops without a measured size."""
    shared = runtime.raw.get("code_size", {}).get("shared_helper_bytes", DEFAULT_SHARED_HELPER_BYTES)
    unknown_default = runtime.raw.get("code_size", {}).get("unknown_op_bytes", DEFAULT_UNKNOWN_OP_BYTES)
    sizes = []
    unknown = []
    for name in sorted(set(ops)):
        s = runtime.ops.get(name)
        if s is not None and s.code_bytes:
            sizes.append(s.code_bytes)
        else:
            unknown.append(name)
            sizes.append(unknown_default)
    if not sizes:
        return 0, unknown
    sizes.sort(reverse=True)
    total = sizes[0] + sum(s - min(s, shared) for s in sizes[1:])
    return total, unknown


def estimate(board: Board, runtime: Runtime, ops: list[str], model_bytes: int,
             arena_bytes: int) -> Footprint:
    code, unknown = ops_code_bytes(runtime, ops)
    core = runtime.no_ops_code_bytes - runtime.empty_program_bytes
    flash_parts = {"baseline": board.baseline_flash, "tflm_core": core, "tflm_ops": code,
                   "nanoml": NANOML_GLUE_FLASH, "model": model_bytes}
    ram_parts = {"baseline": board.baseline_ram, "arena": arena_bytes, "nanoml": NANOML_GLUE_RAM}
    flash = sum(flash_parts.values())
    ram = sum(ram_parts.values())
    notes = []
    if unknown:
        notes.append("no measured code size for " + ", ".join(unknown) +
                     f"; assumed {DEFAULT_UNKNOWN_OP_BYTES:,} B each")
    return Footprint(flash, ram, flash_parts, ram_parts, flash <= board.flash_bytes,
                     ram <= board.ram_bytes, notes)
