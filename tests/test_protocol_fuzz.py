"""The C++ frame parser survives 1,000,000 seeded random/mutated frames with
AddressSanitizer + UBSan (tests/cpp/fuzz_frames.cpp), and a short libFuzzer
run when clang's fuzzer runtime is installed (tests/cpp/libfuzzer_frames.cpp)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEADER_DIR = ROOT / "sketches" / "common"
CPP = ROOT / "tests" / "cpp"
FRAMES = int(os.environ.get("NANOML_FUZZ_FRAMES", "1000000"))


def _compile(cxx: str, src: Path, out: Path, extra: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([cxx, "-std=gnu++14", "-O1", "-g", "-fno-omit-frame-pointer",
                           "-Wall", "-Wextra", f"-I{HEADER_DIR}", *extra, str(src), "-o", str(out)],
                          capture_output=True, text=True)


@pytest.mark.slow
def test_million_random_frames_under_asan(tmp_path):
    cxx = shutil.which("clang++") or shutil.which("clang++-14") or shutil.which("g++")
    if not cxx:
        pytest.skip("no C++ compiler")
    exe = tmp_path / "fuzz_frames"
    r = _compile(cxx, CPP / "fuzz_frames.cpp", exe,
                 ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"])
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    r = subprocess.run([str(exe), str(FRAMES), "20240601"], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    m = re.search(r"frames=(\d+) clean=(\d+) accepted=(\d+) rejected=(\d+)", r.stdout)
    assert m, r.stdout
    frames, clean, accepted, rejected = map(int, m.groups())
    assert frames == FRAMES
    # the run exercised both paths heavily
    assert clean > FRAMES // 20 and accepted >= clean and rejected > FRAMES // 4


@pytest.mark.slow
def test_libfuzzer_target(tmp_path):
    cxx = shutil.which("clang++-14") or shutil.which("clang++")
    if not cxx:
        pytest.skip("clang++ not installed")
    exe = tmp_path / "libfuzzer_frames"
    r = _compile(cxx, CPP / "libfuzzer_frames.cpp", exe, ["-fsanitize=fuzzer,address,undefined",
                                                         "-fno-sanitize-recover=all"])
    if r.returncode != 0 and "libclang_rt.fuzzer" in r.stderr + r.stdout:
        pytest.skip("clang's libFuzzer runtime is not installed (libclang-rt-14-dev)")
    assert r.returncode == 0, r.stderr
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "frame").write_bytes(b"\x10~nm in seq=1 len=2 hex=0102*B5A1\r\n")
    r = subprocess.run([str(exe), "-runs=200000", "-seed=1", "-max_len=512", str(corpus)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Done 200000 runs" in r.stderr
