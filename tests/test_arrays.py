"""nanoml.arrays: user .npy/.npz files read exactly when they are what they say,
refused (InputError, one line) before any allocation when they are not."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from nanoml import arrays
from nanoml.errors import InputError


def _header(shape, descr="<f4", fortran=False) -> bytes:
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": descr, "fortran_order": fortran,
                                             "shape": shape})
    return b.getvalue()


def test_round_trips(tmp_path):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.save(tmp_path / "c.npy", a)
    np.save(tmp_path / "f.npy", np.asfortranarray(a))
    b = io.BytesIO()
    np.lib.format.write_array(b, a, version=(2, 0))            # format 2.0 (4-byte header length)
    (tmp_path / "v2.npy").write_bytes(b.getvalue())
    for name in ("c.npy", "f.npy", "v2.npy"):
        ((key, got),) = arrays.read_arrays(tmp_path / name)
        assert key == "" and got.dtype == a.dtype and np.array_equal(got, a), name
    np.savez(tmp_path / "z.npz", x=a, y=a[0].astype(np.int8))
    np.savez_compressed(tmp_path / "zc.npz", b=a, a=np.zeros((0, 3), np.uint8))
    z = arrays.read_arrays(tmp_path / "z.npz")
    assert [k for k, _ in z] == ["x", "y"] and np.array_equal(z[1][1], a[0].astype(np.int8))
    zc = arrays.read_npz(tmp_path / "zc.npz")
    assert list(zc) == ["b", "a"] and zc["a"].shape == (0, 3) and np.array_equal(zc["b"], a)
    np.savez(tmp_path / "empty.npz")
    assert arrays.read_arrays(tmp_path / "empty.npz") == []
    got = arrays.read_npy(tmp_path / "c.npy")
    got[0, 0, 0] = 7                                           # a writable array of its own
    assert got[0, 0, 0] == 7


def _refused(path, match, **kw):
    with pytest.raises(InputError, match=match) as e:
        arrays.read_arrays(path, **kw)
    assert "\n" not in e.value.message and e.value.hint


def test_header_must_match_the_bytes(tmp_path):
    p = tmp_path / "a.npy"
    p.write_bytes(_header((1 << 22, 1 << 22)) + bytes(64))       # asks for 64 TiB
    _refused(p, "64.0 TiB")
    p.write_bytes(_header((6, 4)) + bytes(95))                   # one byte short
    _refused(p, "96 bytes .* but 95 bytes follow")
    p.write_bytes(_header((6, 4)) + bytes(97))                   # one byte too many
    _refused(p, "but 97 bytes follow")
    p.write_bytes(_header((-1, 4)))
    _refused(p, "negative dimension")
    p.write_bytes(_header((2,), "|O") + bytes(16))
    _refused(p, "object data, not numbers")
    p.write_bytes(_header((2,), [("a", "<i4")]) + bytes(8))
    _refused(p, "not numbers")
    p.write_bytes(b"\x93NUMPY\x03\x00" + bytes(20))
    _refused(p, "version 3.0")
    p.write_bytes(b"\x93NUMPY\x01\x00\xff\xff{'descr'")
    _refused(p, "not a readable .npy")
    p.write_bytes(b"just text")
    _refused(p, "not a NumPy .npy or .npz")
    np.save(p, np.zeros(300, np.uint8))
    _refused(p, "more than the 256 B accepted", max_bytes=256)
    assert arrays.read_arrays(p, max_bytes=300)[0][1].size == 300


def test_npz_members_are_checked_before_they_inflate(tmp_path):
    p = tmp_path / "z.npz"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", _header((6, 1 << 28)) + bytes(4096))   # header: 6 GiB
    _refused(p, r"z.npz \(x.npy\): the header asks for 6.0 GiB")
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", bytes(2 << 20))                        # 2 MiB inflated
    _refused(p, "inflate to 2.0 MiB", max_bytes=1 << 20)
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("notes.txt", b"hello")
    _refused(p, "'notes.txt' is not a .npy array")
    p.write_bytes(b"PK\x03\x04" + bytes(30))
    _refused(p, "not a readable .npz")


def test_only_regular_files_are_opened(tmp_path):
    import os
    fifo = tmp_path / "f.npy"
    os.mkfifo(fifo)                                              # opening it would block
    _refused(fifo, "not a regular file")
    _refused(tmp_path, "a directory")
    _refused("/dev/zero", "not a regular file")
    _refused(tmp_path / "missing.npy", "no such NumPy file")
