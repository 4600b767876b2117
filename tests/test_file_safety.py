"""build / convert / profile --report: nothing outside the project folder is ever
written or deleted, and a disk that cannot take the output is a one-line user
error (exit 2) that leaves no temp file and nothing half-written (issue 9)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from firmware_helpers import make_model
from mutants import run_cli


def tree_state(root: Path) -> dict:
    """Every entry below root: file content hashes, link targets, folders, modes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[str(p)] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[str(p)] = ("dir", st.st_mode)
            else:
                out[str(p)] = ("file", st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def build(model: Path, out: Path, *extra: str):
    return run_cli(["build", str(model), "--no-compile", "--json", "--out", str(out), *extra],
                   timeout=120)


def one_line_error(r) -> str:
    """The error of a failed run (--json or text): one line, no traceback."""
    assert r.signal is None and not r.timed_out and not r.traceback, r.stderr
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    if r.stdout.strip().startswith("{"):
        return json.loads(r.stdout)["error"]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def no_temp_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if "nanoml-tmp" in p.name or "nanoml-probe" in p.name]


# --------------------------------------------------------------------- outside the folder

@pytest.fixture()
def victim_tree(tmp_path):
    """A project built once, and a tree outside it that a manifest will point at."""
    outside = tmp_path / "outside"
    (outside / "victim").mkdir(parents=True)
    (outside / "victim" / "v1.txt").write_text("precious 1\n")
    (outside / "victim" / "v2.txt").write_text("precious 2\n")
    (outside / "abs.txt").write_text("precious abs\n")
    model = make_model(tmp_path / "m.tflite")
    proj = tmp_path / "proj"
    r = build(model, proj)
    assert r.exit_code == 0, r.stderr
    return tmp_path, outside, model, proj


@pytest.mark.parametrize("force", [False, True])
def test_manifest_entries_outside_the_folder_are_ignored(victim_tree, force):
    tmp_path, outside, model, proj = victim_tree
    (proj / "link").symlink_to(outside / "victim", target_is_directory=True)
    (proj / "filelink.txt").symlink_to(outside / "victim" / "v1.txt")
    v1, v2, ab = outside / "victim" / "v1.txt", outside / "victim" / "v2.txt", outside / "abs.txt"
    mpath = proj / ".nanoml" / "manifest.json"
    m = json.loads(mpath.read_text())
    hostile = {"../outside/victim/v1.txt": sha(v1), str(ab): sha(ab),
               "src/../../outside/victim/v2.txt": sha(v2), "link/v1.txt": sha(v1),
               "filelink.txt": sha(v1), "./../outside/abs.txt": sha(ab),
               "..\\outside\\abs.txt": sha(ab), "": sha(ab)}
    m["files"].update(hostile)
    mpath.write_text(json.dumps(m))
    before = tree_state(outside)
    # another model: every hostile entry is "no longer generated", a deletion candidate
    r = build(make_model(tmp_path / "m.tflite", outputs=3), proj, *(["--force"] if force else []))
    assert r.exit_code == 0 and not r.traceback, r.stderr
    assert tree_state(outside) == before
    assert (proj / "link").is_symlink() and (proj / "filelink.txt").is_symlink()
    d = json.loads(r.stdout)
    assert sorted(d["files"]["ignored"]) == sorted(hostile)
    assert d["files"]["removed"] == []
    assert any("ignored 8 entries of .nanoml/manifest.json" in n for n in d["notes"])
    # the rewritten manifest no longer lists them
    assert set(json.loads(mpath.read_text())["files"]).isdisjoint(hostile)


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("link", ["src", "platformio.ini", ".nanoml", "src/main.cpp"])
def test_no_write_through_a_symlink(victim_tree, link, force):
    tmp_path, outside, model, proj = victim_tree
    target = outside / "victim" if link in ("src", ".nanoml") else outside / "victim" / "v1.txt"
    p = proj / link
    if p.is_dir():
        import shutil
        shutil.rmtree(p)
    else:
        p.unlink()
    p.symlink_to(target, target_is_directory=target.is_dir())
    before = tree_state(outside)
    r = build(make_model(tmp_path / "m.tflite", outputs=3), proj, *(["--force"] if force else []))
    msg = one_line_error(r)
    assert "symbolic link" in msg and link.split("/")[0] in msg
    assert tree_state(outside) == before
    assert no_temp_files(tmp_path) == []


def test_manifest_cannot_delete_the_users_own_files(victim_tree):
    """Inside the folder too: only names a build generates can be removed as stale."""
    tmp_path, outside, model, proj = victim_tree
    mine = {"notes.txt": "my notes\n", "src/mine.cpp": "// mine\n", "lib/x/x.h": "// x\n",
            "other.ino": "// a tab of mine\n", ".git/config": "[core]\n"}
    for rel, text in mine.items():
        (proj / rel).parent.mkdir(parents=True, exist_ok=True)
        (proj / rel).write_text(text)
    mpath = proj / ".nanoml" / "manifest.json"
    m = json.loads(mpath.read_text())
    m["files"].update({rel: sha(proj / rel) for rel in mine})
    mpath.write_text(json.dumps(m))
    r = build(make_model(tmp_path / "m.tflite", outputs=3), proj, "--force")
    assert r.exit_code == 0, r.stderr
    assert {rel: (proj / rel).read_text() for rel in mine} == mine
    assert sorted(json.loads(r.stdout)["files"]["ignored"]) == sorted(mine)


def test_a_project_can_still_be_rebuilt_and_its_stale_files_removed(victim_tree):
    """The safety checks keep the normal behaviour: stale nanoml files go, own files stay."""
    tmp_path, outside, model, proj = victim_tree
    r = build(model, proj, "--input", "synthetic")
    assert r.exit_code == 0, r.stderr
    (proj / "src" / "mine.cpp").write_text("// mine\n")
    r = build(make_model(tmp_path / "w.tflite", (1, 20, 3)), proj, "--input", "imu")
    assert r.exit_code == 0, r.stderr
    assert "src/nanoml_input.cpp" in json.loads(r.stdout)["files"]["written"]
    r = build(model, proj)
    d = json.loads(r.stdout)
    assert r.exit_code == 0 and "src/nanoml_input.cpp" in d["files"]["removed"]
    assert d["files"]["ignored"] == [] and (proj / "src" / "mine.cpp").is_file()


# --------------------------------------------------------------------- unwritable outputs

@pytest.fixture()
def a_file(tmp_path) -> Path:
    f = tmp_path / "plain.txt"
    f.write_text("not a folder\n")
    return f


def test_build_below_a_file_is_a_usage_error(tmp_path, a_file):
    model = make_model(tmp_path / "m.tflite")
    msg = one_line_error(build(model, a_file / "proj"))
    assert str(a_file) in msg and "not a folder" in msg
    r = run_cli(["build", str(model), "--no-compile", "--out", str(a_file / "a" / "b")])
    assert "not a folder" in one_line_error(r)


@pytest.mark.parametrize("where", ["below_file", "missing", "folder", "proc"])
def test_profile_report_unwritable(tmp_path, a_file, where):
    model = make_model(tmp_path / "m.tflite")
    path = {"below_file": a_file / "r.md", "missing": tmp_path / "no" / "such" / "r.md",
            "folder": tmp_path / "r.md", "proc": Path("/proc/nanoml-report.md")}[where]
    if where == "folder":
        path.mkdir()
    t0 = time.monotonic()
    r = run_cli(["profile", str(model), "--estimate", "--report", str(path)])
    msg = one_line_error(r)
    assert str(path) in msg
    assert time.monotonic() - t0 < 30
    assert no_temp_files(tmp_path) == []


@pytest.mark.parametrize("where", ["below_file", "missing", "folder"])
def test_convert_checks_the_output_before_any_work(tmp_path, a_file, where):
    """The output location is checked before TensorFlow starts (it took 20 s to find out)."""
    src = tmp_path / "m.keras"
    src.write_bytes(b"not really a keras file: the output check comes first")
    out = {"below_file": a_file / "m.tflite", "missing": tmp_path / "no" / "m.tflite",
           "folder": tmp_path / "d.tflite"}[where]
    if where == "folder":
        out.mkdir()
    t0 = time.monotonic()
    r = run_cli(["convert", str(src), "-o", str(out), "--quantize", "none"])
    msg = one_line_error(r)
    assert str(out) in msg or str(out.parent) in msg
    assert time.monotonic() - t0 < 10


def test_dev_full_is_refused_not_replaced():
    from nanoml.atomic import write_atomic
    from nanoml.errors import UsageError
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    before = os.stat("/dev/full")
    with pytest.raises(UsageError, match="not a regular file"):
        write_atomic("/dev/full", b"x" * 10)
    after = os.stat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


# --------------------------------------------------------------------- full / read-only disks

@pytest.fixture()
def small_fs(tmp_path):
    """A 256 KiB tmpfs (root only: skipped where it cannot be mounted)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(mnt: Path) -> None:
    with open(mnt / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def test_full_disk_build_leaves_the_project_as_it_was(tmp_path, small_fs):
    proj = small_fs / "proj"
    r = build(make_model(tmp_path / "a.tflite"), proj)
    assert r.exit_code == 0, r.stderr
    before = tree_state(proj)
    fill(small_fs)
    bigger = make_model(tmp_path / "b.tflite", (1, 64), 32, seed=1)   # other content, more bytes
    msg = one_line_error(build(bigger, proj))
    assert "no space left" in msg
    assert tree_state(proj) == before
    assert no_temp_files(small_fs) == []


def test_full_disk_new_build_leaves_nothing(tmp_path, small_fs):
    fill(small_fs)
    os.truncate(small_fs / "filler", os.path.getsize(small_fs / "filler") - 16384)
    msg = one_line_error(build(make_model(tmp_path / "m.tflite", (1, 64), 32), small_fs / "p"))
    assert "no space left" in msg
    assert sorted(p.name for p in small_fs.iterdir()) == ["filler"]


def test_full_disk_report(tmp_path, small_fs):
    fill(small_fs)
    os.truncate(small_fs / "filler", os.path.getsize(small_fs / "filler") - 1024)
    model = make_model(tmp_path / "m.tflite")
    r = run_cli(["profile", str(model), "--estimate", "--report", str(small_fs / "r.html")])
    assert "no space left" in one_line_error(r)
    assert sorted(p.name for p in small_fs.iterdir()) == ["filler"]


def test_read_only_disk(tmp_path, small_fs):
    model = make_model(tmp_path / "m.tflite")
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    msg = one_line_error(build(model, small_fs / "proj"))
    assert "read-only file system" in msg
    r = run_cli(["profile", str(model), "--estimate", "--report", str(small_fs / "r.md")])
    assert "read-only file system" in one_line_error(r)
    src = tmp_path / "m.keras"
    src.write_bytes(b"x")
    r = run_cli(["convert", str(src), "-o", str(small_fs / "m.tflite"), "--quantize", "none"])
    assert "read-only file system" in one_line_error(r)
