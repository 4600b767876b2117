"""Local PlatformIO package sources for air-gapped builds (nanoml.toml [offline]).

PlatformIO downloads the nordicnrf52 platform, the mbed core
(framework-arduino-mbed), the toolchain and the libraries on first use. Without
a network, nanoml can write local copies into platformio.ini instead:

    platform = file:///srv/pio/platform-nordicnrf52
    platform_packages =
        framework-arduino-mbed @ file:///srv/pio/framework-arduino-mbed
        toolchain-gccarmnoneeabi @ file:///srv/pio/toolchain-gccarmnoneeabi
    lib_deps =
        symlink:///srv/pio/libraries/Chirale_TensorFLowLite

The config is read from `--config FILE`, else `nanoml.toml` in the current
directory, else `nanoml.toml` in the project directory; `--packages-dir DIR`
alone works too (packages found in DIR by name). Format (docs/build.md):

    [offline]
    dir = "/srv/pio"                 # optional: find everything below by name
    platform = "platform-nordicnrf52"  # relative paths: to this file's folder
    framework = "..."                # = packages.framework-arduino-mbed
    toolchain = "..."                # = packages.toolchain-gccarmnoneeabi
    link = "symlink"                 # libraries: "symlink" (default) or "file" (copy)
    [offline.packages]               # any other platform package, by name
    tool-sreccat = "..."
    [offline.libraries]              # by library name (lib_deps name, case-insensitive)
    Chirale_TensorFLowLite = "..."

An unknown section or key is an error naming the closest valid one (a typo must
not silently fall back to a download); a library this build does not use is left
out of platformio.ini and of the report (`unused`).
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from ..errors import UsageError

CONFIG_NAME = "nanoml.toml"
PLATFORM_NAMES = ("platform-nordicnrf52", "nordicnrf52")
FRAMEWORK_PACKAGE = "framework-arduino-mbed"
TOOLCHAIN_PACKAGE = "toolchain-gccarmnoneeabi"
# Packages the nordicnrf52 platform installs for this board: the framework and
# toolchain always, tool-sreccat always (not optional in platform.json), the
# uploaders for `-t upload` (tool-bossac-nordicnrf52 is the one sam-ba uses;
# PlatformIO also enables tool-openocd for any upload target).
KNOWN_PACKAGES = (FRAMEWORK_PACKAGE, TOOLCHAIN_PACKAGE, "tool-sreccat",
                  "tool-bossac-nordicnrf52", "tool-openocd")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip", ".tar.bz2")


@dataclass
class LocalPackages:
    source: str                                   # the config file, or "--packages-dir"
    platform: str | None = None                   # URL for `platform =`
    packages: dict[str, str] = field(default_factory=dict)    # name -> URL
    libraries: dict[str, str] = field(default_factory=dict)   # lowercase name -> URL
    link: str = "symlink"
    unused: list[str] = field(default_factory=list)           # configured, not in this build

    def library_url(self, lib_dep: str) -> str | None:
        return self.libraries.get(lib_dep_name(lib_dep).lower())

    def to_json(self) -> dict:
        return {"source": self.source, "platform": self.platform, "packages": self.packages,
                "libraries": self.libraries, "link": self.link}


def lib_dep_name(entry: str) -> str:
    """Library name of a lib_deps entry: 'owner/Name@1.0' -> 'Name'; URL -> repo name."""
    e = entry.strip()
    if "://" in e:
        path = urlparse(e).path.rstrip("/")
        name = path.rsplit("/", 1)[-1]
        return name[:-4] if name.endswith(".git") else name
    e = e.split("@", 1)[0].strip()
    return e.rsplit("/", 1)[-1]


def _url(path: Path, scheme: str = "file") -> str:
    return f"{scheme}://{path.resolve().as_posix()}"


def _resolve(base: Path, value: str, what: str) -> Path:
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = base / p
    if not p.exists():
        raise UsageError(f"local package for {what} not found: {p}",
                         hint=f"fix the path in the [offline] section of {CONFIG_NAME}")
    return p


def _find_in_dir(d: Path, names: tuple[str, ...]) -> Path | None:
    """A folder or archive in d (or d/packages, d/libraries) whose name starts with one of names."""
    wanted = tuple(n.lower() for n in names)
    for sub in (d, d / "packages", d / "libraries", d / "platforms"):
        if not sub.is_dir():
            continue
        for p in sorted(sub.iterdir()):
            n = p.name.lower()
            for suf in ARCHIVE_SUFFIXES:
                if n.endswith(suf):
                    n = n[: -len(suf)]
            if any(n == w or n.startswith(w + "@") or n.startswith(w + "-") or
                   n.startswith(w + "_") for w in wanted):
                if p.is_dir() or p.name.lower().endswith(ARCHIVE_SUFFIXES):
                    return p
    return None


SECTIONS = ("offline",)
OFFLINE_KEYS = ("dir", "platform", "framework", "toolchain", "link", "packages", "libraries")
_TABLE_KEYS = ("packages", "libraries")


def _unknown_key(source: str, where: str, key: str, valid: tuple[str, ...]) -> UsageError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return UsageError(f"{source}: unknown key {key!r} in {where}"
                      + (f" (did you mean {close[0]!r}?)" if close else ""),
                      hint=f"valid keys there: {', '.join(valid)} (docs/build.md, offline builds)")


def check_config(data: dict, source: str) -> None:
    """Refuse unknown sections and keys, and values of the wrong type, naming the
    closest valid key: a misspelt key must not be silently ignored."""
    for key in data:
        if key not in SECTIONS:
            raise _unknown_key(source, "the file", key, SECTIONS)
    t = data.get("offline", {})
    if not isinstance(t, dict):
        raise UsageError(f"{source}: offline must be a table ([offline])")
    for key, value in t.items():
        if key not in OFFLINE_KEYS:
            raise _unknown_key(source, "[offline]", key, OFFLINE_KEYS)
        if key in _TABLE_KEYS:
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise UsageError(f"{source}: [offline.{key}] must map names to paths (strings)")
        elif not isinstance(value, str):
            raise UsageError(f"{source}: [offline] {key} must be a string (a path), "
                             f"not {type(value).__name__}")


def _from_table(t: dict, base: Path, source: str, lib_names: list[str]) -> LocalPackages:
    link = t.get("link", "symlink")
    if link not in ("symlink", "file"):
        raise UsageError(f"{source}: [offline] link must be \"symlink\" or \"file\" (got {link!r})")
    lp = LocalPackages(source=source, link=link)
    scan = _resolve(base, t["dir"], "dir") if t.get("dir") else None
    if scan is not None:
        p = _find_in_dir(scan, PLATFORM_NAMES)
        if p:
            lp.platform = _url(p)
        for name in KNOWN_PACKAGES:
            p = _find_in_dir(scan, (name,))
            if p:
                lp.packages[name] = _url(p)
        for lib in lib_names:
            p = _find_in_dir(scan, (lib,))
            if p:
                lp.libraries[lib.lower()] = _url(p, link)
    if t.get("platform"):
        lp.platform = _url(_resolve(base, t["platform"], "the platform"))
    if t.get("framework"):
        lp.packages[FRAMEWORK_PACKAGE] = _url(_resolve(base, t["framework"], FRAMEWORK_PACKAGE))
    if t.get("toolchain"):
        lp.packages[TOOLCHAIN_PACKAGE] = _url(_resolve(base, t["toolchain"], TOOLCHAIN_PACKAGE))
    for name, value in (t.get("packages") or {}).items():
        lp.packages[name] = _url(_resolve(base, value, name))
    wanted = {n.lower(): n for n in lib_names}
    for name, value in (t.get("libraries") or {}).items():
        if name.lower() not in wanted:
            close = difflib.get_close_matches(name.lower(), list(wanted), n=1, cutoff=0.8)
            if close:
                raise UsageError(f"{source}: [offline.libraries] {name!r} is not a library of "
                                 f"this build (did you mean {wanted[close[0]]!r}?)",
                                 hint="name the library as in lib_deps: "
                                      + ", ".join(lib_names))
            lp.unused.append(name)
            continue
        lp.libraries[name.lower()] = _url(_resolve(base, value, name), link)
    return lp


def find_config(cwd: Path, project_dir: Path | None, config: Path | None) -> Path | None:
    if config is not None:
        if not config.is_file():
            raise UsageError(f"config file not found: {config}")
        return config
    for d in (cwd, project_dir):
        if d is not None and (d / CONFIG_NAME).is_file():
            return d / CONFIG_NAME
    return None


def load_local_packages(lib_deps: list[str], cwd: Path | None = None,
                        project_dir: Path | None = None, config: Path | None = None,
                        packages_dir: Path | None = None) -> LocalPackages | None:
    """Local package sources from the config and/or --packages-dir, or None."""
    lib_names = [lib_dep_name(e) for e in lib_deps]
    cfg = find_config(cwd or Path.cwd(), project_dir, config)
    table: dict = {}
    base = Path.cwd()
    source = "--packages-dir"
    if cfg is not None:
        try:
            data = tomllib.loads(cfg.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as e:
            raise UsageError(f"{cfg}: not valid TOML ({e})") from None
        check_config(data, str(cfg))
        table = dict(data.get("offline") or {})
        base = cfg.resolve().parent
        source = str(cfg)
    if packages_dir is not None:
        table["dir"] = str(Path(packages_dir).resolve())
    if not table:
        return None
    return _from_table(table, base, source, lib_names)
