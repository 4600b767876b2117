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
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
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

    def to_json(self) -> dict:
        return {"dir": str(self.root), "written": self.written, "unchanged": self.unchanged,
                "removed": self.removed, "kept": self.kept, "edited": self.edited}


def read_manifest(root: Path) -> dict:
    p = root / MANIFEST
    if not p.is_file():
        return {}
    try:
        d = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return d if isinstance(d, dict) else {}


def is_nanoml_project(root: Path) -> bool:
    return (root / MANIFEST).is_file()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.nanoml-tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def sync_files(root: Path, files: dict[str, bytes], force: bool = False,
               meta: dict | None = None) -> WriteReport:
    """Bring `root` to contain `files` (relative path -> content); see module doc."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} exists and is not a folder")
    manifest = read_manifest(root)
    owned: dict[str, str] = dict(manifest.get("files", {}))
    report = WriteReport(root=root)

    conflicts = []
    user_kept: set[str] = set()
    for rel, data in files.items():
        p = root / rel
        if not p.exists():
            continue
        current = _sha(p.read_bytes())
        want = _sha(data)
        if current == want:
            continue
        if rel not in owned:
            conflicts.append(f"{rel} (not written by nanoml)")
        elif owned[rel] != current:
            if owned[rel] == want and not force:
                user_kept.add(rel)        # nanoml's content did not change: keep the edit
            else:
                conflicts.append(f"{rel} (edited since nanoml wrote it)")
    if conflicts and not force:
        raise UsageError(
            f"{root}: nanoml would overwrite " + ", ".join(conflicts),
            hint="move your changes to files nanoml does not generate (or nanoml_user.ini), "
                 "build into another --out folder, or pass --force to overwrite")

    new_owned: dict[str, str] = {}
    for rel, data in sorted(files.items()):
        p = root / rel
        digest = _sha(data)
        new_owned[rel] = digest
        if rel in user_kept:
            report.edited.append(rel)
            continue
        if p.is_file() and _sha(p.read_bytes()) == digest:
            report.unchanged.append(rel)
            continue
        _atomic_write(p, data)
        report.written.append(rel)

    for rel, digest in sorted(owned.items()):
        if rel in files:
            continue
        p = root / rel
        if not p.is_file():
            continue
        if _sha(p.read_bytes()) == digest or force:
            p.unlink()
            report.removed.append(rel)
        else:
            report.kept.append(rel)

    m = {"generator": f"nanoml {__version__}", "files": new_owned}
    if meta:
        m.update(meta)
    mdata = (json.dumps(m, indent=2, sort_keys=True) + "\n").encode()
    mp = root / MANIFEST
    if not mp.is_file() or mp.read_bytes() != mdata:
        _atomic_write(mp, mdata)
    return report
