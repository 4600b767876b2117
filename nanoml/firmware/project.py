"""Write generated files into a project folder, in place, without clobbering.

nanoml records the files it wrote, with the SHA-256 of what it wrote, in
`.nanoml/manifest.json`. On the next `nanoml build` into the same folder:

- a file whose new content equals what is on disk is left alone (its mtime
  does not change, so PlatformIO / arduino-cli recompile only what changed);
- a nanoml-owned file that changed is rewritten, unless the user edited it
  since nanoml wrote it: then nanoml stops and names it (``--force`` overwrites);
  a user-edited file whose nanoml version did not change is left as edited;
- a file nanoml does not own is never touched; if nanoml wants to write a
  file of that name, it stops (``--force`` takes the file over);
- a nanoml-owned file the new build does not need (e.g. nanoml_input.cpp after
  switching to --input serial) is deleted, unless the user edited it.

Nothing outside the folder is ever written or deleted, whatever the manifest
says (it comes with the folder, possibly from someone else): a manifest entry
that is absolute, climbs with `..`, or passes through a symbolic link is ignored
(reported in `ignored`), and so is one naming a file no build generates (a manifest
cannot make nanoml delete the user's own files); nanoml never writes through a link. Files are
written to temp files beside them and renamed into place, all of them only after
every temp file was written, the manifest last: a full or read-only disk leaves
the folder as it was (UsageError, exit 2).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from .. import __version__
from ..atomic import os_error, probe_folder, stage
from ..errors import UsageError

MANIFEST = ".nanoml/manifest.json"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class WriteReport:
    root: Path
    written: list[str] = field(default_factory=list)     # created or changed
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)        # stale but user-edited: left in place
    edited: list[str] = field(default_factory=list)      # user-edited, nanoml's version unchanged
    ignored: list[str] = field(default_factory=list)     # manifest entries not acted on

    def to_json(self) -> dict:
        return {"dir": str(self.root), "written": self.written, "unchanged": self.unchanged,
                "removed": self.removed, "kept": self.kept, "edited": self.edited,
                "ignored": self.ignored}


MAX_MANIFEST_BYTES = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def read_manifest(root: Path) -> dict:
    p = Path(root) / MANIFEST
    try:
        if not p.is_file() or p.stat().st_size > MAX_MANIFEST_BYTES:
            return {}
        d = json.loads(p.read_text())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return d if isinstance(d, dict) else {}


def is_nanoml_project(root: Path) -> bool:
    return (root / MANIFEST).is_file()


def inside(root: Path, rel: object) -> Path | None:
    """root/rel if `rel` is a plain relative path that stays in `root` without
    passing through a symbolic link (root itself resolved); else None."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        return None
    pp = PurePosixPath(rel)
    if pp.is_absolute() or not pp.parts or any(part in ("..", ".") for part in pp.parts) \
            or ":" in pp.parts[0]:
        return None
    p = root
    for part in pp.parts:
        p = p / part
        if p.is_symlink():
            return None
    return p


def _owned(manifest: dict, root: Path,
           generated: Callable[[str], bool]) -> tuple[dict[str, str], list[str]]:
    """The manifest's {path: sha256} entries that are safe to act on, and the ignored ones."""
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        return {}, ([f"{MANIFEST}: 'files' is not a table"] if files else [])
    owned, ignored = {}, []
    for rel, digest in files.items():
        if inside(root, rel) is None or not isinstance(digest, str) \
                or not _HEX64.match(digest) or not generated(rel):
            ignored.append(str(rel)[:200])
        else:
            owned[rel] = digest
    return owned, ignored


def _file_sha(p: Path) -> str | None:
    """SHA-256 of a regular file (streamed), None when it is not one."""
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _target(root: Path, rel: str) -> Path:
    """Where a generated file goes; UsageError if that would leave the folder or
    replace something that is not a regular file."""
    p = inside(root, rel)
    if p is None:
        raise UsageError(f"{root / rel}: the path is (or passes through) a symbolic link; "
                         f"nanoml does not write through links",
                         hint="remove the link, or build into another --out folder")
    if p.exists() and not p.is_file():
        raise UsageError(f"{p} exists and is not a regular file",
                         hint="remove it, or build into another --out folder")
    return p


def _mkdirs(d: Path, created: list[Path]) -> None:
    missing = []
    while not d.exists():
        missing.append(d)
        d = d.parent
    for m in reversed(missing):
        m.mkdir()
        created.append(m)


def _check_root(root: Path) -> None:
    if root.is_symlink() and not root.exists():
        raise UsageError(f"{root} is a broken symbolic link")
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} exists and is not a folder")
    ancestor = root
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise os_error(OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)), root)
    probe_folder(ancestor, root)


def sync_files(root: Path, files: dict[str, bytes], force: bool = False,
               meta: dict | None = None,
               generated: Callable[[str], bool] = lambda rel: True) -> WriteReport:
    """Bring `root` to contain `files` (relative path -> content); see module doc.
    `generated(rel)`: whether a manifest entry names a file nanoml can generate at all
    (others are ignored, never deleted)."""
    try:
        return _sync(Path(root), files, force, meta, generated)
    except OSError as e:        # reading what is there (a file nanoml may not read, ...)
        raise os_error(e, e.filename or root, "update") from None


def _sync(shown: Path, files: dict[str, bytes], force: bool, meta: dict | None,
          generated: Callable[[str], bool]) -> WriteReport:
    _check_root(shown)
    root = shown.resolve()
    manifest = read_manifest(root)
    owned, ignored = _owned(manifest, root, lambda rel: rel in files or generated(rel))
    report = WriteReport(root=shown, ignored=ignored)
    targets = {rel: _target(root, rel) for rel in files}
    mpath = _target(root, MANIFEST)

    conflicts = []
    user_kept: set[str] = set()
    current: dict[str, str | None] = {}
    for rel, data in files.items():
        current[rel] = cur = _file_sha(targets[rel])
        want = _sha(data)
        if cur is None or cur == want:
            continue
        if rel not in owned:
            conflicts.append(f"{rel} (not written by nanoml)")
        elif owned[rel] != cur:
            if owned[rel] == want and not force:
                user_kept.add(rel)        # nanoml's content did not change: keep the edit
            else:
                conflicts.append(f"{rel} (edited since nanoml wrote it)")
    if conflicts and not force:
        raise UsageError(
            f"{shown}: nanoml would overwrite " + ", ".join(conflicts),
            hint="move your changes to files nanoml does not generate (or nanoml_user.ini), "
                 "build into another --out folder, or pass --force to overwrite")

    new_owned: dict[str, str] = {}
    writes: list[tuple[str, Path, bytes]] = []
    for rel, data in sorted(files.items()):
        digest = _sha(data)
        new_owned[rel] = digest
        if rel in user_kept:
            report.edited.append(rel)
        elif current[rel] == digest:
            report.unchanged.append(rel)
        else:
            writes.append((rel, targets[rel], data))
    m = {"generator": f"nanoml {__version__}", "files": new_owned}
    if meta:
        m.update(meta)
    mdata = (json.dumps(m, indent=2, sort_keys=True) + "\n").encode()
    if _file_sha(mpath) != _sha(mdata):
        writes.append(("", mpath, mdata))
    _commit(shown, writes, report)

    for rel, digest in sorted(owned.items()):
        if rel in files:
            continue
        p = inside(root, rel)
        cur = _file_sha(p) if p is not None else None
        if cur is None:
            continue
        if cur == digest or force:
            try:
                p.unlink()
                report.removed.append(rel)
            except OSError as e:
                report.kept.append(rel)
                report.ignored.append(f"{rel} (cannot remove: {e.strerror or e})")
        else:
            report.kept.append(rel)
    return report


def _commit(shown: Path, writes: list[tuple[str, Path, bytes]], report: WriteReport) -> None:
    """Write every file to a temp file beside it, then rename them all (the manifest
    last); on any failure remove the temp files and folders made, and raise."""
    created: list[Path] = []
    staged: list[tuple[str, Path, Path]] = []
    current = shown
    try:
        for rel, dest, data in writes:
            current = dest
            _mkdirs(dest.parent, created)
            staged.append((rel, stage(dest, data), dest))
        for rel, tmp, dest in staged:
            current = dest
            os.replace(tmp, dest)
            if rel:
                report.written.append(rel)
    except OSError as e:
        for _, tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass
        raise os_error(e, current) from None
