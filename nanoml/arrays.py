"""NumPy arrays from user files (.npy, .npz), checked before anything is read.

A `.npy` header can ask for any shape, and a small `.npz` can inflate to
gigabytes; `numpy.load` allocates what the header says before it notices that
the data is not there. Here the file must be a regular file, its header is
parsed on its own (`numpy.lib.format`), shape x itemsize must be exactly the
bytes that follow the header (the file's size for a .npy, the member's
uncompressed size for an .npz member), and the total is bounded by `max_bytes`.
Only then is the data read. Every refusal is an `InputError` (exit 2, one line).
Used by `validate --inputs` and `convert --calib`. Never prints.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InputError

# Largest array data accepted from one file (all members of an .npz together).
MAX_ARRAY_BYTES = 1 << 30
# Most arrays accepted in one .npz.
MAX_NPZ_MEMBERS = 1024
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"
_HINT = "save the arrays with numpy.save (one array) or numpy.savez (several)"


def regular_file_size(path: str | Path, what: str = "file", hint: str | None = None) -> int:
    """Size of `path`, which must be an existing regular file (not a directory,
    FIFO or device: those are refused before they are opened)."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError(f"{p}: no such {what}", hint) from None
    except OSError as e:
        raise InputError(f"{p}: cannot read the {what} ({e.strerror or e})", hint) from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise InputError(f"{p}: {kind}, expected a {what}", hint)
    return st.st_size


def read_arrays(path: str | Path, max_bytes: int = MAX_ARRAY_BYTES,
                hint: str | None = None) -> list[tuple[str, object]]:
    """[(name, array), ...] from a .npy (one array, named "") or an .npz (its
    members in file order, named as numpy.load names them), told apart by
    their first bytes."""
    p = Path(path)
    hint = hint or _HINT
    size = regular_file_size(p, "NumPy file", hint)
    with _open(p, hint) as fp:
        head = fp.read(len(_NPY_MAGIC))
    if head[:2] == _ZIP_MAGIC:           # local file header, or an empty archive
        return list(_read_npz(p, size, max_bytes, hint).items())
    if head == _NPY_MAGIC:
        return [("", read_npy(p, max_bytes, hint))]
    raise InputError(f"{p}: not a NumPy .npy or .npz file", hint)


def read_npy(path: str | Path, max_bytes: int = MAX_ARRAY_BYTES, hint: str | None = None):
    """The array of a .npy file, after checking its header against the file size."""
    p = Path(path)
    hint = hint or _HINT
    size = regular_file_size(p, "NumPy file", hint)
    with _open(p, hint) as fp:
        try:
            shape, fortran, dtype, offset = _header(fp)
        except ValueError as e:
            raise InputError(f"{p}: not a readable .npy file ({_one_line(e)})", hint) from None
        nbytes = _check(p, shape, dtype, size - offset, max_bytes, hint)
        return _read_data(fp, p, shape, fortran, dtype, nbytes, hint)


def read_npz(path: str | Path, max_bytes: int = MAX_ARRAY_BYTES,
             hint: str | None = None) -> dict:
    """{name: array} of an .npz file (member order), each member checked like a .npy
    and all of them together bounded by `max_bytes` before any data is inflated."""
    p = Path(path)
    hint = hint or _HINT
    return _read_npz(p, regular_file_size(p, "NumPy file", hint), max_bytes, hint)


# --------------------------------------------------------------------- details

def _open(p: Path, hint: str | None):
    try:
        return open(p, "rb")
    except OSError as e:
        raise InputError(f"{p}: cannot read the file ({e.strerror or e})", hint) from None


def _one_line(e: BaseException) -> str:
    s = str(e).strip()
    return (s.splitlines()[0][:200] if s else type(e).__name__)


def _header(fp):
    """(shape, fortran_order, dtype, offset of the data) of the .npy stream at fp."""
    from numpy.lib import format as npf
    version = npf.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = npf.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, fortran, dtype = npf.read_array_header_2_0(fp)
    else:
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    return shape, fortran, dtype, fp.tell()


def _check(p: Path, shape, dtype, data_bytes: int, max_bytes: int, hint: str | None,
           member: str = "") -> int:
    """Bytes of array data the header promises, which must be the bytes present."""
    where = f"{p}{f' ({member})' if member else ''}"
    if dtype.kind not in "biufc" or dtype.itemsize == 0:
        raise InputError(f"{where}: holds {dtype} data, not numbers", hint)
    if any(d < 0 for d in shape):
        raise InputError(f"{where}: negative dimension in the shape {tuple(shape)}", hint)
    count = 1
    for d in shape:
        count *= d
    nbytes = count * dtype.itemsize
    if nbytes > max_bytes:
        raise InputError(f"{where}: the header asks for {_size(nbytes)} of {dtype} "
                         f"{tuple(shape)}, more than the {_size(max_bytes)} accepted", hint)
    if nbytes != data_bytes:
        raise InputError(f"{where}: the header describes {nbytes} bytes of {dtype} "
                         f"{tuple(shape)} but {max(data_bytes, 0)} bytes follow it "
                         f"(truncated or corrupt)", hint)
    return nbytes


def _read_data(fp, p: Path, shape, fortran: bool, dtype, nbytes: int, hint: str | None,
               member: str = ""):
    import numpy as np
    buf = bytearray(nbytes)
    view = memoryview(buf)
    got = 0
    while got < nbytes:
        n = fp.readinto(view[got:])
        if not n:
            break
        got += n
    if got != nbytes:
        where = f"{p}{f' ({member})' if member else ''}"
        raise InputError(f"{where}: truncated: {got} of {nbytes} data bytes", hint)
    arr = np.frombuffer(buf, dtype=dtype)
    return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)


def _read_npz(p: Path, size: int, max_bytes: int, hint: str | None) -> dict:
    import zipfile
    import zlib
    if size > max_bytes:
        raise InputError(f"{p}: {_size(size)}, more than the {_size(max_bytes)} accepted", hint)
    errors = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError,
              NotImplementedError, RuntimeError)
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_NPZ_MEMBERS:
                raise InputError(f"{p}: {len(infos)} arrays, more than the {MAX_NPZ_MEMBERS} "
                                 "accepted", hint)
            total = sum(i.file_size for i in infos)
            if total > max_bytes:
                raise InputError(f"{p}: its arrays inflate to {_size(total)}, more than the "
                                 f"{_size(max_bytes)} accepted", hint)
            out: dict = {}
            for info in infos:
                if not info.filename.endswith(".npy") or info.is_dir():
                    raise InputError(f"{p}: member {info.filename!r} is not a .npy array", hint)
                name = info.filename[:-4]
                with zf.open(info) as fp:
                    try:
                        shape, fortran, dtype, offset = _header(fp)
                    except ValueError as e:
                        raise InputError(f"{p} ({info.filename}): not a readable .npy array "
                                         f"({_one_line(e)})", hint) from None
                    nbytes = _check(p, shape, dtype, info.file_size - offset, max_bytes, hint,
                                    info.filename)
                    out[name] = _read_data(fp, p, shape, fortran, dtype, nbytes, hint,
                                           info.filename)
            return out
    except InputError:
        raise
    except errors as e:
        raise InputError(f"{p}: not a readable .npz file ({_one_line(e)})", hint) from None


def _size(n: int) -> str:
    for unit, k in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{n} B"
