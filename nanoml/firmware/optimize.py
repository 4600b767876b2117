"""Optimization profiles: which compiler flags and float ABI each library source gets.

The Arduino mbed core compiles every file with `-Os`, and PlatformIO's mbed builder
(`configure_fpu_flags`) appends `-mfloat-abi=soft` after the variant's
`-mfloat-abi=softfp`, so floats are computed in software. An optimization profile
says what the generated project does instead:

- `size`: the library at the core's flags (`-Os`), the float ABI fixed where the FPU
  pays (measured per kernel);
- `speed`: in addition, the library sources of the model's kernels at the flag set
  measured best for that kernel (never one measured slower than `-Os`).

One owner, the measured table `nanoml/data/optimize/<runtime>.toml` (its format:
`OpTable`; a runtime without one has only `size`). Everything here is pure: the
functions take the table and the model's ops and return data, which `render.py`
writes into the project's extra script (sketches/platformio/nanoml_flags.py.j2) and
the measurement harness imports to build exactly what nanoml generates.

The rule for a source (a library-relative path; table globs are `fnmatch` patterns,
`*` crossing `/`): the ops of the model whose sources match it are its users; its
optimization flags are the speed flag set when every user chose one and the same one,
else the base flags; its float ABI is the users' when they all agree, else the
build's. Files no model op uses keep the base flags and the build's float ABI.
The build's float ABI (every other compile, and the link, so the linker takes the
matching multilib) is `softfp` when some op of the model runs faster on the FPU,
else PlatformIO's `soft`.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Iterable

PROFILES = ("speed", "size")
FLOAT_ABIS = ("soft", "softfp")
BASE = "base"                  # a kernel's `speed` when nothing measured beat the base flags
PLATFORMIO_FLOAT_ABI = "soft"  # what PlatformIO's mbed builder leaves in effect
# Default profile: speed when the firmware with the speed build's extra code still
# leaves this share of the board's flash free (room for the estimate's error and
# for the user's own additions); else size.
SPEED_FLASH_MARGIN = 0.05
ABI_FLAG = "-mfloat-abi="


class TableError(ValueError):
    """A malformed optimization table (a packaging or measurement bug, not user input)."""


@dataclass(frozen=True)
class OpFlags:
    sources: tuple[str, ...]        # library-relative globs
    speed: str                      # a flag set name, or BASE
    float_abi: dict[str, str]       # dtype -> soft|softfp; key "*" for every dtype
    code_bytes: dict[str, int] = field(default_factory=dict)   # flag set (or base) -> bytes

    def abi_for(self, dtype: str | None) -> str | None:
        return self.float_abi.get(dtype or "*", self.float_abi.get("*"))


@dataclass(frozen=True)
class OpTable:
    runtime: str
    measured_on: str
    base_flags: tuple[str, ...]
    flag_sets: dict[str, tuple[str, ...]]
    ops: dict[str, OpFlags]
    # an entry of ops' sources -> flag set: that source's speed flags wherever an op
    # naming it chose a speed set (one kernel file measured best at its own flags)
    source_speed: dict[str, str] = field(default_factory=dict)

    def flags_of(self, name: str) -> tuple[str, ...]:
        return self.base_flags if name == BASE else self.flag_sets[name]

    def speed_flags(self, op_speed: str, glob: str) -> tuple[str, ...]:
        """A source's flags in the speed profile for an op whose choice is op_speed."""
        if op_speed == BASE:
            return self.base_flags
        return self.flags_of(self.source_speed.get(glob, op_speed))


def _strings(v, where: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
        raise TableError(f"{where}: expected a list of non-empty strings")
    return tuple(v)


def _abi(v, where: str) -> dict[str, str]:
    """`float_abi = "softfp"` (every dtype) or `{float32 = "softfp", int8 = "soft"}`."""
    d = {"*": v} if isinstance(v, str) else v
    if not isinstance(d, dict) or any(a not in FLOAT_ABIS for a in d.values()):
        raise TableError(f"{where}.float_abi: expected one of {FLOAT_ABIS} "
                         f"or a table of them by dtype")
    return dict(d)


def parse_table(data: dict, runtime: str) -> OpTable:
    """An OpTable from the toml's content; TableError naming the bad entry."""
    where = f"optimize/{runtime}.toml"
    base = _strings(data.get("base_flags"), f"{where}: base_flags")
    sets_raw = data.get("flag_sets") or {}
    if not isinstance(sets_raw, dict) or BASE in sets_raw:
        raise TableError(f"{where}: flag_sets must be a table (and not name '{BASE}')")
    sets = {k: _strings(v, f"{where}: flag_sets.{k}") for k, v in sets_raw.items()}
    ops = {}
    for name, e in (data.get("ops") or {}).items():
        w = f"{where}: ops.{name}"
        if not isinstance(e, dict):
            raise TableError(f"{w}: expected a table")
        speed = e.get("speed", BASE)
        if speed != BASE and speed not in sets:
            raise TableError(f"{w}.speed: '{speed}' is not a flag set ({', '.join(sets)})")
        code = e.get("code_bytes") or {}
        if not isinstance(code, dict) or not all(isinstance(b, int) for b in code.values()):
            raise TableError(f"{w}.code_bytes: expected {{flag set = bytes}}")
        ops[name] = OpFlags(_strings(e.get("sources"), f"{w}.sources"), speed,
                            _abi(e.get("float_abi", PLATFORMIO_FLOAT_ABI), w), dict(code))
    src_speed = data.get("source_speed") or {}
    if not isinstance(src_speed, dict) or any(v not in sets for v in src_speed.values()):
        raise TableError(f"{where}: source_speed must map sources to flag sets ({', '.join(sets)})")
    return OpTable(runtime, str(data.get("measured_on", "")), base, sets, ops, dict(src_speed))


@lru_cache(maxsize=None)
def load_table(runtime: str) -> OpTable | None:
    """nanoml/data/optimize/<runtime>.toml, or None when the runtime has none."""
    f = resources.files("nanoml.data").joinpath("optimize", f"{runtime}.toml")
    if not f.is_file():
        return None
    return parse_table(tomllib.loads(f.read_text()), runtime)


# ------------------------------------------------------------------ the model's ops

def op_uses(model) -> list[tuple[str, str]]:
    """(builtin op, dtype it computes in) for each distinct use in the model: float32 when
    any of its tensors is float32 (QUANTIZE and DEQUANTIZE included), else its first
    input's dtype."""
    out: list[tuple[str, str]] = []
    for sg in model.subgraphs:
        for op in sg.operators:
            use = op_use(sg, op)
            if op.op != "CUSTOM" and use not in out:
                out.append(use)
    return out


def op_use(subgraph, op) -> tuple[str, str]:
    """(op name, the dtype it computes in) of one operator of a subgraph (op_uses' rule)."""
    types = [subgraph.tensors[i].dtype for i in list(op.inputs) + list(op.outputs)
             if 0 <= i < len(subgraph.tensors)]
    return op.op, "float32" if "float32" in types else (types[0] if types else "")


def _uses(ops: Iterable[str | tuple[str, str]]) -> list[tuple[str, str | None]]:
    return [(o, None) if isinstance(o, str) else (o[0], o[1]) for o in ops]


def op_float_abi(table: OpTable | None, op: str, dtype: str | None) -> str:
    """The float ABI measured best for this kernel; for a kernel not in the table, the FPU
    for float work (the issue's measurements: 2.5-10x fewer instructions) and PlatformIO's
    soft otherwise."""
    e = table.ops.get(op) if table is not None else None
    abi = e.abi_for(dtype) if e is not None else None
    if abi is None:
        abi = "softfp" if dtype == "float32" else PLATFORMIO_FLOAT_ABI
    return abi


def float_abi(table: OpTable | None, ops: Iterable[str | tuple[str, str]]) -> str:
    """The build's float ABI: softfp when some op of the model runs faster on the FPU."""
    uses = _uses(ops)
    return "softfp" if any(op_float_abi(table, o, d) == "softfp" for o, d in uses) \
        else PLATFORMIO_FLOAT_ABI


def split_flags(flags: Iterable[str]) -> tuple[tuple[str, ...], str | None]:
    """(optimization flags, float ABI) of a file's entry."""
    opt, abi = [], None
    for f in flags:
        if f.startswith(ABI_FLAG):
            abi = f[len(ABI_FLAG):]
        else:
            opt.append(f)
    return tuple(opt), abi


def combine(entries: list[list[str]], base_flags: Iterable[str], build_abi: str) -> list[str]:
    """One file's flags from the entries of every glob (or op) that names it: the
    optimization flags when all agree, else the base; the ABI when all agree, else the
    build's."""
    parts = [split_flags(e) for e in entries]
    opts = {p[0] for p in parts}
    abis = {p[1] or build_abi for p in parts}
    opt = next(iter(opts)) if len(opts) == 1 else tuple(base_flags)
    abi = next(iter(abis)) if len(abis) == 1 else build_abi
    return list(opt) + [ABI_FLAG + abi]


def file_flags(table: OpTable, ops: Iterable[str | tuple[str, str]],
               profile: str) -> dict[str, list[str]]:
    """{library-relative source glob: its flags} for the model's ops (names, or (name,
    dtype) pairs): each list replaces the core's optimization flags and the float ABI
    for the files it matches (`source_flags`). Files not matched keep the base flags
    and take `float_abi(table, ops)`."""
    if profile not in PROFILES:
        raise ValueError(f"unknown optimization profile {profile!r}")
    uses = _uses(ops)
    build_abi = float_abi(table, uses)
    per_glob: dict[str, list[list[str]]] = {}
    for op, dtype in uses:
        e = table.ops.get(op)
        if e is None:
            continue
        abi = [ABI_FLAG + op_float_abi(table, op, dtype)]
        for glob in e.sources:
            opt = table.speed_flags(e.speed if profile == "speed" else BASE, glob)
            per_glob.setdefault(glob, []).append(list(opt) + abi)
    return {g: combine(entries, table.base_flags, build_abi)
            for g, entries in sorted(per_glob.items())}


def source_flags(files: dict[str, list[str]], path: str,
                 base_flags: Iterable[str] = ("-Os",),
                 build_abi: str = "softfp") -> list[str] | None:
    """The flags `file_flags`' result gives one library-relative source path (globs that
    overlap combine as in `combine`); None when no glob names it (left as it is)."""
    hits = [flags for glob, flags in files.items() if fnmatch.fnmatchcase(path, glob)]
    if not hits:
        return None
    return hits[0] if len(hits) == 1 else combine(hits, base_flags, build_abi)


def flags_for_source(table: OpTable, ops: Iterable[str | tuple[str, str]], profile: str,
                     path: str) -> list[str]:
    """Every library source's optimization flags and float ABI in the build nanoml
    generates for these ops (a file no glob names: the base flags and the build's ABI),
    e.g. for a harness that compiles the library itself."""
    uses = _uses(ops)
    abi = float_abi(table, uses)
    hit = source_flags(file_flags(table, uses, profile), path, table.base_flags, abi)
    return hit if hit is not None else list(table.base_flags) + [ABI_FLAG + abi]


def extra_code_bytes(table: OpTable | None, ops: Iterable[str | tuple[str, str]],
                     profile: str) -> int | None:
    """Flash the profile adds over the base build, from the table's per-kernel code sizes
    (None when a chosen kernel's sizes were not measured)."""
    if profile == "size" or table is None:
        return 0
    total = 0
    for op in dict.fromkeys(o for o, _ in _uses(ops)):
        e = table.ops.get(op)
        if e is None or e.speed == BASE:
            continue
        if BASE not in e.code_bytes or e.speed not in e.code_bytes:
            return None
        total += e.code_bytes[e.speed] - e.code_bytes[BASE]
    return total


# ------------------------------------------------------------------ the choice

@dataclass
class OptimizePlan:
    profile: str                  # speed | size
    chosen_by: str                # option | default
    float_abi: str                # the build's (every compile but the files' own, the link)
    base_flags: list[str]
    files: dict[str, list[str]]   # library-relative glob -> flags (file_flags)
    extra_flash_bytes: int | None
    table: str | None             # the table's data file, None without one
    notes: list[str] = field(default_factory=list)

    def tuned(self) -> int:
        """How many of `files`' globs get optimization flags other than the base."""
        return sum(1 for f in self.files.values() if list(split_flags(f)[0]) != self.base_flags)

    def to_json(self) -> dict:
        return {"profile": self.profile, "chosen_by": self.chosen_by,
                "float_abi": self.float_abi, "base_flags": self.base_flags,
                "files": self.files, "extra_flash_bytes": self.extra_flash_bytes,
                "table": self.table, "notes": self.notes}


ARDUINO_NOTE = ("Arduino sketch: the IDE compiles everything, the library included, with "
                "the mbed core's flags (-Os, -mfloat-abi=softfp -mfpu=fpv4-sp-d16: floats on "
                "the FPU); it cannot set flags per file, so there is no speed profile")


def plan(requested: str | None, runtime, ops: list[tuple[str, str]], fmt: str,
         board_flash_bytes: int, size_flash_bytes: int,
         speed_flash_bytes: int | None = None) -> OptimizePlan:
    """The optimization profile of a build. `requested`: --optimize (None: the default,
    speed when the speed firmware still leaves SPEED_FLASH_MARGIN of the board's flash
    free, else size); `size_flash_bytes`, `speed_flash_bytes`: the footprint estimates
    of the two builds (speed None: size + the table's extra kernel code). UsageError
    for a profile this runtime or format cannot build."""
    from ..errors import UsageError
    if requested is not None and requested not in PROFILES:
        raise UsageError(f"unknown optimization profile '{requested}'",
                         hint=f"use one of: {', '.join(PROFILES)}")
    table = load_table(runtime.id)
    where = f"nanoml/data/optimize/{runtime.id}.toml" if table is not None else None
    notes: list[str] = []
    if fmt == "arduino":
        if requested == "speed":
            raise UsageError("--optimize speed needs flags per library file, which the "
                             "Arduino IDE cannot set",
                             hint="use --format platformio, or --optimize size (the sketch "
                                  "gets the core's -Os with the FPU)")
        return OptimizePlan("size", "option" if requested else "default", "softfp",
                            ["-Os"], {}, 0, where, [ARDUINO_NOTE])
    if table is None:
        if requested == "speed":
            raise UsageError(f"{runtime.name} {runtime.version} has no measured kernel flags, "
                             f"so only --optimize size",
                             hint="use --optimize size (the library at the core's -Os)")
        abi = float_abi(None, ops)
        return OptimizePlan("size", "option" if requested else "default", abi, ["-Os"], {},
                            0, None, [f"{runtime.name} {runtime.version}: no measured kernel "
                                      f"flags, size profile (float ABI {abi})"])
    profile, by = requested or "speed", "option" if requested else "default"
    extra = extra_code_bytes(table, ops, "speed")
    if speed_flash_bytes is not None:
        extra = speed_flash_bytes - size_flash_bytes
    if requested is None:
        room = board_flash_bytes * (1 - SPEED_FLASH_MARGIN)
        if extra is None or size_flash_bytes + extra > room:
            profile = "size"
            notes.append("size profile: the speed build's kernels would leave less than "
                         f"{SPEED_FLASH_MARGIN:.0%} of the flash free"
                         if extra is not None else
                         "size profile: the speed build's code size was not measured")
    files = file_flags(table, ops, profile)
    if profile == "speed" and not any(split_flags(f)[0] != table.base_flags
                                      for f in files.values()):
        notes.append("speed profile: no kernel of this model measured faster than "
                     + " ".join(table.base_flags) + "; the library keeps the core's flags")
    return OptimizePlan(profile, by, float_abi(table, ops), list(table.base_flags), files,
                        extra if profile == "speed" else 0, where, notes)
