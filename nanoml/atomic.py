"""Output files written whole or not at all, and output locations checked early.

    check_output_file(path, "report")   # before a long job: the folder exists, is a
                                        # folder, and a file can be created in it
    write_atomic(path, data)            # temp file in the same folder, then rename

A write that fails (read-only or full disk, missing folder, a path below a
file, ...) leaves the old file as it was and no temp file behind, and raises
`UsageError` (exit 2, one line) naming the path and the system's reason. An
existing output that is not a regular file (a folder, a device such as
/dev/full, a FIFO) is refused, never replaced. Never prints.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from .errors import UsageError

TEMP_SUFFIX = ".nanoml-tmp"
_HINT = "check that the folder exists, is writable and has free space, or choose another path"


def os_error(e: OSError, path: str | Path, verb: str = "write") -> UsageError:
    """A one-line UsageError for an OSError met writing `path`."""
    why = e.strerror or type(e).__name__
    if e.errno == errno.ENOSPC:
        why = "no space left on the device"
    elif e.errno == errno.EROFS:
        why = "read-only file system"
    elif e.errno == errno.ENOTDIR:
        why = "a part of the path is a file, not a folder"
    return UsageError(f"cannot {verb} {path}: {why}", _HINT)


def _mode() -> int:
    um = os.umask(0)
    os.umask(um)
    return 0o666 & ~um


def check_output_file(path: str | Path, what: str = "file") -> Path:
    """Refuse, before any work, an output path that cannot be written: an existing
    non-regular file, a missing parent folder, a parent that is not a folder, or a
    folder where no file can be created (probed by creating and removing one)."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise os_error(e, p) from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise UsageError(f"cannot write the {what} {p}: it is {kind}",
                         f"give the path of a {what} file to create or replace")
    parent = p.parent
    if not parent.exists():
        if any(q.exists() and not q.is_dir() for q in parent.parents):
            raise os_error(OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)), p)
        raise UsageError(f"cannot write the {what} {p}: the folder {parent} does not exist",
                         "create the folder first, or choose another path")
    if not parent.is_dir():
        raise os_error(OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)), p)
    probe_folder(parent, p)
    return p


def probe_folder(folder: Path, shown: Path | None = None) -> None:
    """Create and remove an empty temp file in `folder` (os.access is no test for
    root or a full disk); UsageError when that fails."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".nanoml-probe-", suffix=TEMP_SUFFIX)
    except OSError as e:
        raise os_error(e, shown or folder) from None
    os.close(fd)
    os.unlink(tmp)


def stage(path: Path, data: bytes) -> Path:
    """Write `data` to a new temp file beside `path` (O_EXCL: never an existing file
    or link) and return its name; removes it and re-raises on failure."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:      # no fsync: whole-or-nothing against a
            f.write(data)                   # failing disk or process, not power loss
        os.chmod(tmp, _mode())
    except BaseException:
        _unlink(tmp)
        raise
    return Path(tmp)


def _unlink(p: str | Path) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


def write_atomic(path: str | Path, data: bytes | str, what: str = "file") -> Path:
    """Replace `path` with `data` in one rename (the old content stays on any failure)."""
    p = Path(path)
    check_output_file(p, what)
    return _place(p, data, os.replace)


def create_new(path: str | Path, data: bytes | str, what: str = "file") -> Path:
    """Create `path` whole with `data`, never replacing anything: the data is
    staged in a temp file, then hard-linked to `path` (FileExistsError when the
    name is taken, so two writers never overwrite each other's file)."""
    return _place(Path(path), data, os.link)


def _place(p: Path, data: bytes | str, put) -> Path:
    """Stage `data` beside `p`, then `put(temp, p)` (os.replace or os.link); the
    temp file never stays behind."""
    if isinstance(data, str):
        data = data.encode()
    try:
        tmp = stage(p, data)
    except OSError as e:
        raise os_error(e, p) from None
    try:
        put(tmp, p)
    except FileExistsError:
        raise
    except OSError as e:
        raise os_error(e, p) from None
    finally:
        _unlink(tmp)             # after os.replace it is gone already; after os.link a 2nd name
    return p
