"""Runtime profiles: one data file per supported TFLM Arduino library (runtimes/)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import UsageError
from .resources import data_dir


@dataclass(frozen=True)
class OpSupport:
    name: str            # builtin op name, e.g. "CONV_2D"
    resolver: str        # MicroMutableOpResolver method, e.g. "AddConv2D"
    max_version: int     # highest op version the library's kernel handles
    code_bytes: int | None = None   # flash increment of this op alone (Cortex-M4 build)
    excluded_versions: tuple[int, ...] = ()   # versions <= max_version whose feature is rejected (hybrid...)


@dataclass(frozen=True)
class Runtime:
    id: str
    name: str
    version: str
    header: str
    lib_deps: str               # PlatformIO lib_deps entry (pinned)
    arduino_library: str        # Arduino library-manager name@version
    static_memory: bool         # built with -DTF_LITE_STATIC_MEMORY
    no_ops_code_bytes: int      # TFLM code with an empty resolver (Cortex-M4)
    empty_program_bytes: int
    ops: dict[str, OpSupport]
    raw: dict
    custom_ops: dict[str, str] = field(default_factory=dict)   # custom_code -> resolver method

    def support(self, op: str, version: int) -> tuple[bool, str | None]:
        """(supported, reason-if-not) for a builtin op at a given version."""
        s = self.ops.get(op)
        if s is None:
            return False, f"{op} has no kernel in {self.name} {self.version}"
        if version > s.max_version:
            return False, (f"{op} version {version} is newer than {self.name} {self.version} "
                           f"supports (up to v{s.max_version})")
        if version in s.excluded_versions:
            return False, (f"{op} version {version} is not handled by {self.name} {self.version}'s "
                           f"kernel (see runtimes/{self.id}.toml)")
        return True, None

    def support_custom(self, custom_code: str) -> tuple[bool, str | None]:
        """(supported, reason-if-not) for a CUSTOM op by its custom_code."""
        if custom_code in self.custom_ops:
            return True, None
        return False, (f"custom op '{custom_code}' is not registered by {self.name} {self.version}")

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "version": self.version,
                "header": self.header, "lib_deps": self.lib_deps,
                "static_memory": self.static_memory, "ops": len(self.ops)}


@lru_cache(maxsize=None)
def all_runtimes() -> dict[str, Runtime]:
    out = {}
    for f in sorted(data_dir("runtimes").glob("*.toml")):
        d = tomllib.loads(f.read_text())
        ops = {name: OpSupport(name=name, resolver=v["resolver"], max_version=v["max_version"],
                               code_bytes=v.get("code_bytes"),
                               excluded_versions=tuple(v.get("excluded_versions", ())))
               for name, v in d.get("ops", {}).items()}
        out[d["id"]] = Runtime(
            id=d["id"], name=d["name"], version=d["version"], header=d["header"],
            lib_deps=d["lib_deps"], arduino_library=d.get("arduino_library", ""),
            static_memory=d.get("static_memory", True),
            no_ops_code_bytes=d["code_size"]["no_ops_bytes"],
            empty_program_bytes=d["code_size"]["empty_program_bytes"],
            ops=ops, raw=d,
            custom_ops={c: v["resolver"] for c, v in d.get("custom_ops", {}).items()})
    return out


def default_runtime_id() -> str:
    for rid, r in all_runtimes().items():
        if r.raw.get("default"):
            return rid
    if not all_runtimes():
        raise UsageError("no runtime profiles found in runtimes/ (broken installation?)")
    return next(iter(all_runtimes()))


def get_runtime(runtime_id: str | None) -> Runtime:
    rts = all_runtimes()
    rid = runtime_id or default_runtime_id()
    if rid not in rts:
        raise UsageError(f"unknown runtime '{rid}'; known runtimes: {', '.join(rts)}")
    return rts[rid]
