"""`nanoml capture` end to end, for real: the virtual board on a pseudo-terminal
fed by a known WAV/CSV, fake boards (tests/capture_fakes.py) that drop, corrupt or
vanish, a real SIGINT to a child process, the dataset read back by `features` and
exported to Edge Impulse's data-acquisition format (docs/capture.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import sigint_default
from mutants import run_cli

ROOT = Path(__file__).resolve().parent.parent
RATE = 16000
IMU = ["ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz"]


# ---------------------------------------------------------------- sources

def tone_wav(path: Path, seconds: float, seed: int = 1) -> np.ndarray:
    """A deterministic 440 Hz tone in noise (int16), written as a 16 kHz mono WAV."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    rng = np.random.default_rng(seed)
    x = np.clip(3000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 800, n), -32768, 32767)
    x = x.astype(np.int16)
    from test_capture_link import _wav
    _wav(path, x, RATE)
    return x


def imu_csv(path: Path, rows: int, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = (rng.normal(0, 1, (rows, 9)) * [1, 1, 1, 200, 200, 200, 40, 40, 40]).astype(np.float32)
    with open(path, "w") as f:
        f.write(",".join(IMU) + "\n")
        for r in d:
            f.write(",".join(str(v) for v in r) + "\n")
    return d


def read_wav(path: Path) -> np.ndarray:
    from nanoml.pipeline.wav import read_wav as rw
    return rw(path, expect_rate=RATE)[0]


def manifest(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines() if x]


def capture(*args, timeout: float = 120):
    return run_cli(["capture", *map(str, args)], timeout=timeout)


def doc_of(r) -> dict:
    lines = [x for x in r.stdout.splitlines() if x.strip()]
    assert len(lines) == 1, r.stdout + r.stderr
    return json.loads(lines[0])


def no_temp_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if "nanoml-tmp" in p.name or "nanoml-probe" in p.name]


def files_listed(out: Path) -> tuple[set[str], set[str]]:
    """(files on disk under out, files in the manifest), relative posix paths."""
    disk = {p.relative_to(out).as_posix() for p in out.rglob("*")
            if p.is_file() and p.name != "manifest.jsonl"}
    return disk, {e["file"] for e in manifest(out)}


# ---------------------------------------------------------------- acceptance: bit-identical

def test_sixty_seconds_of_audio_are_bit_identical_takes(tmp_path):
    src = tone_wav(tmp_path / "tone.wav", 60)
    out = tmp_path / "data"
    r = capture("--sim", "--source", tmp_path / "tone.wav", "--sensor", "mic", "--label", "tone",
                "--count", 6, "--length", 10, "--out", out, "--countdown", 0, "--fast", "--json")
    assert r.exit_code == 0, r.stderr
    d = doc_of(r)
    assert d["schema"] == "capture/1" and d["written"] == 6 and d["with_gaps"] == 0
    entries = manifest(out)
    assert [e["file"] for e in entries] == [f"tone/tone.{k}.wav" for k in range(1, 7)]
    assert entries == d["takes"]
    for k, e in enumerate(entries):
        data = (out / e["file"]).read_bytes()
        assert e["sha256"] == hashlib.sha256(data).hexdigest() and e["bytes"] == len(data)
        assert (e["gaps"], e["samples"], e["kept_apart"]) == (0, 160000, False)
        take = read_wav(out / e["file"])
        assert np.array_equal(take, src[k * 160000:(k + 1) * 160000]), k
        assert e["board"] == "nano33ble_sense" and e["sim"] is True and e["rate_hz"] == RATE
    assert sum(e["samples"] for e in entries) == len(src)
    assert no_temp_files(out) == []


def test_imu_from_a_csv_at_100_hz_with_9_channels_is_bit_identical(tmp_path):
    from nanoml.pipeline.imu import read_csv
    imu_csv(tmp_path / "imu.csv", 6000)
    src = read_csv(tmp_path / "imu.csv", IMU)
    out = tmp_path / "data"
    r = capture("--sim", "--source", tmp_path / "imu.csv", "--sensor", "imu", "--rate", 100,
                "--channels", 9, "--label", "wave", "--count", 6, "--length", 10, "--out", out,
                "--countdown", 0, "--fast", "--json")
    assert r.exit_code == 0, r.stderr
    entries = manifest(out)
    assert len(entries) == 6 and all(e["gaps"] == 0 and e["samples"] == 1000 for e in entries)
    assert entries[0]["units"] == ["g"] * 3 + ["dps"] * 3 + ["uT"] * 3
    for k, e in enumerate(entries):
        path = out / e["file"]
        head = path.read_text().splitlines()[0]
        assert head == "t_us,ax[g],ay[g],az[g],gx[dps],gy[dps],gz[dps],mx[uT],my[uT],mz[uT]"
        take = read_csv(path, IMU)
        assert take.view(np.uint32).tolist() == \
            src[k * 1000:(k + 1) * 1000].view(np.uint32).tolist(), k
        t = np.loadtxt(path, delimiter=",", skiprows=1, usecols=0, dtype=np.int64)
        assert len(t) == 1000 and np.all(np.diff(t) > 0)


# ---------------------------------------------------------------- the dataset's files

def test_numbering_resumes_and_nothing_is_overwritten(tmp_path):
    tone_wav(tmp_path / "a.wav", 3)
    out = tmp_path / "data"
    args = ["--sim", "--source", tmp_path / "a.wav", "--label", "yes", "--length", "0.5",
            "--out", out, "--countdown", 0, "--fast"]
    assert capture(*args, "--count", 2).exit_code == 0
    before = {p.name: p.read_bytes() for p in (out / "yes").iterdir()}
    (out / "yes" / "yes.7.wav").write_bytes(b"not mine")       # a take numbered by hand
    r = capture(*args, "--count", 1)
    assert r.exit_code == 0, r.stderr
    names = sorted(p.name for p in (out / "yes").iterdir())
    assert names == ["yes.1.wav", "yes.2.wav", "yes.7.wav", "yes.8.wav"]
    assert all((out / "yes" / n).read_bytes() == b for n, b in before.items())
    assert (out / "yes" / "yes.7.wav").read_bytes() == b"not mine"
    assert [e["file"] for e in manifest(out)] == ["yes/yes.1.wav", "yes/yes.2.wav", "yes/yes.8.wav"]


def test_create_new_never_replaces_a_file(tmp_path):
    from nanoml.atomic import create_new
    p = tmp_path / "f.wav"
    create_new(p, b"first")
    with pytest.raises(FileExistsError):
        create_new(p, b"second")
    assert p.read_bytes() == b"first" and no_temp_files(tmp_path) == []


def test_a_cut_manifest_line_is_skipped_and_the_next_starts_fresh(tmp_path):
    from nanoml.capture.manifest import append_entry, read_manifest
    (tmp_path / "manifest.jsonl").write_text('{"file": "a/a.1.wav"}\n{"file": "a/a.2')
    append_entry(tmp_path, {"file": "a/a.3.wav"})
    entries, bad = read_manifest(tmp_path)
    assert [e["file"] for e in entries] == ["a/a.1.wav", "a/a.3.wav"] and bad == 1


# ---------------------------------------------------------------- bad input: one line, exit 2

def _one_error(r) -> str:
    assert r.exit_code == 2 and not r.traceback and r.signal is None, (r.exit_code, r.stderr)
    errs = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(errs) == 1, r.stderr
    return errs[0]


@pytest.mark.parametrize("extra, expect", [
    (["--label", "a/b"], "path separator"),
    (["--label", "..", ], "parent folder"),
    (["--label", ""], "must not be empty"),
    (["--label", "a\x01b"], "control character"),
    (["--label", "_gaps"], "reserved"),
    (["--sensor", "sonar"], "'sonar' is not one of"),
    (["--board", "nano33ble"], "has no microphone"),
    (["--count", "0"], "must be >= 1"),
    (["--length", "0"], "must be > 0"),
    (["--length", "abc"], "give seconds"),
    (["--length", "1.5samples"], "whole number"),
    (["--sensor", "imu", "--channels", "4"], "--channels 4"),
    (["--sensor", "imu", "--rate", "500"], "at most 119 Hz"),
    (["--sensor", "mic", "--rate", "8000"], "16000 Hz only"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, extra, expect):
    args = ["--sim", "--out", tmp_path / "d", "--countdown", "0", "--fast"]
    if "--label" not in extra:
        args += ["--label", "yes"]
    assert expect in _one_error(capture(*args, *extra))
    assert not (tmp_path / "d" / "manifest.jsonl").exists()


def test_an_output_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    assert "is a file" in _one_error(capture("--sim", "--label", "a", "--out", tmp_path / "f"))
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.parametrize("make, expect", [
    (lambda p: subprocess.run(["sox", "-n", "-r", "8000", "-b", "16", "-c", "1", str(p),
                               "synth", "0.5", "sine", "440"], check=True), "sample rate 8000"),
    (lambda p: subprocess.run(["sox", "-n", "-r", "16000", "-b", "8", "-c", "1", str(p),
                               "synth", "0.5", "sine", "440"], check=True), "8-bit"),
    (lambda p: subprocess.run(["sox", "-n", "-r", "16000", "-b", "16", "-c", "2", str(p),
                               "synth", "0.5", "sine", "440"], check=True), "2 channels"),
])
def test_a_wav_source_at_the_wrong_rate_or_width_is_refused(tmp_path, make, expect):
    import shutil
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    make(tmp_path / "bad.wav")
    r = capture("--sim", "--source", tmp_path / "bad.wav", "--label", "a", "--out", tmp_path / "d")
    assert expect in _one_error(r)


def test_a_csv_source_with_the_microphone_is_refused(tmp_path):
    imu_csv(tmp_path / "m.csv", 10)
    r = capture("--sim", "--source", tmp_path / "m.csv", "--label", "a", "--out", tmp_path / "d")
    assert "plays into the imu" in _one_error(r)


def test_a_read_only_output_folder_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,ro", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        for out in (mnt, mnt / "new"):
            msg = _one_error(capture("--sim", "--label", "a", "--out", out, "--countdown", 0))
            assert "read-only file system" in msg, msg
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# ---------------------------------------------------------------- fake boards: gaps, vanishing

@pytest.fixture()
def fake(tmp_path):
    from capture_fakes import start_fake_board
    boards = []

    def start(kind, **kw):
        b = start_fake_board(kind, **kw)
        boards.append(b)
        return b
    yield start
    for b in boards:
        b.stop()


@pytest.mark.parametrize("kind", ["drop", "corrupt"])
def test_takes_with_gaps_are_named_and_kept_apart(tmp_path, fake, kind):
    src = tone_wav(tmp_path / "s.wav", 4)
    board = fake(kind, source=tmp_path / "s.wav", sensor="mic", after_takes=1, lines=(3, 7))
    out = tmp_path / "data"
    r = capture("--port", board.port, "--label", "yes", "--count", 3, "--length", 1, "--out", out,
                "--countdown", 0, "--json")
    assert r.exit_code == 1, r.stderr            # documented: some takes have gaps
    d = doc_of(r)
    assert (d["written"], d["with_gaps"]) == (3, 2)
    entries = manifest(out)
    assert [e["file"] for e in entries] == ["yes/yes.1.wav", "_gaps/yes/yes.2.wav",
                                            "_gaps/yes/yes.3.wav"]
    assert entries[0]["gaps"] == 0 and np.array_equal(read_wav(out / entries[0]["file"]),
                                                      src[:16000])
    spf = 120                                    # samples per smp frame (protocol)
    for k, e in enumerate(entries[1:], start=1):
        assert e["kept_apart"] is True and e["gaps"] == 2 * spf, e
        assert e["gap_spans"] == [[3 * spf, spf], [7 * spf, spf]]
        if kind == "corrupt":
            assert e["corrupt_lines"] == 2
        take = read_wav(out / e["file"])
        want = src[k * 16000:(k + 1) * 16000].copy()
        for off, n in e["gap_spans"]:
            want[off:off + n] = 0                # the missing samples are zeros, the rest true
        assert np.array_equal(take, want)
    assert not (out / "yes" / "yes.2.wav").exists()


def test_a_board_that_vanishes_mid_take_keeps_every_earlier_take(tmp_path, fake):
    src = tone_wav(tmp_path / "s.wav", 5)
    board = fake("vanish", source=tmp_path / "s.wav", sensor="mic", after_takes=2, lines=(5,))
    out = tmp_path / "data"
    # a child process of its own (not run_cli's fork, which would hold the fake's pty open)
    r = subprocess.run([sys.executable, "-m", "nanoml", "capture", "--port", board.port,
                        "--label", "yes", "--count", "4", "--length", "1", "--out", str(out),
                        "--countdown", "0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "Traceback" not in r.stderr, (r.returncode, r.stderr)
    errs = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(errs) == 1 and "went away" in errs[0], r.stderr
    disk, listed = files_listed(out)
    assert disk == listed == {"yes/yes.1.wav", "yes/yes.2.wav"}
    for k in range(2):
        assert np.array_equal(read_wav(out / f"yes/yes.{k + 1}.wav"), src[k * 16000:(k + 1) * 16000])
    assert no_temp_files(out) == []


@pytest.mark.parametrize("json_out", [True, False])
def test_ctrl_c_keeps_every_finished_take_and_discards_the_partial_one(tmp_path, json_out):
    src = tone_wav(tmp_path / "s.wav", 30)
    out = tmp_path / "data"
    p = subprocess.Popen([sys.executable, "-m", "nanoml", "capture", "--sim", "--source",
                          str(tmp_path / "s.wav"), "--label", "go", "--count", "50", "--length",
                          "0.4", "--out", str(out), "--countdown", "0"]      # real time
                         + (["--json"] if json_out else []),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=sigint_default)
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            m = out / "manifest.jsonl"
            if m.exists() and len(m.read_text().splitlines()) >= 2:
                break
            time.sleep(0.05)
        time.sleep(0.2)                           # into the next take
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "interrupted"
    disk, listed = files_listed(out)
    assert disk == listed and len(listed) >= 2
    if json_out:
        d = json.loads(stdout)
        assert d["stopped"] == "interrupted" and d["exit_code"] == 130
        assert {t["file"] for t in d["takes"]} == listed
    else:
        assert f"{len(listed)} of 50 take(s) written" in stdout
    n = 6400
    for k, e in enumerate(manifest(out)):
        assert e["file"] == f"go/go.{k + 1}.wav"
        assert np.array_equal(read_wav(out / e["file"]), src[k * n:(k + 1) * n])
    assert no_temp_files(out) == []


# ---------------------------------------------------------------- Edge Impulse export

def _signature_ok(text: str, key: str) -> bool:
    """The documented signing: HMAC-SHA256 of the document encoded with the
    signature set to 64 zeros."""
    doc = json.loads(text)
    sig = doc["signature"]
    doc["signature"] = "0" * 64
    want = hmac.new(key.encode(), json.dumps(doc).encode(), hashlib.sha256).hexdigest()
    return sig == want


def test_edge_impulse_export_follows_the_documented_format(tmp_path):
    src = tone_wav(tmp_path / "s.wav", 2)
    imu_csv(tmp_path / "m.csv", 300)
    out = tmp_path / "data"
    assert capture("--sim", "--source", tmp_path / "s.wav", "--label", "yes", "--count", 2,
                   "--length", 1, "--out", out, "--countdown", 0, "--fast").exit_code == 0
    assert capture("--sim", "--source", tmp_path / "m.csv", "--sensor", "imu", "--rate", 100,
                   "--channels", 6, "--label", "wave", "--length", "150samples", "--out", out,
                   "--countdown", 0, "--fast").exit_code == 0
    r = capture("--export", "edge-impulse", "--out", out, "--json")
    assert r.exit_code == 0, r.stderr
    d = doc_of(r)
    dest = out / "_export" / "edge-impulse"
    assert d["export_to"] == str(dest) and d["signed"] is False
    assert sorted(f["export"] for f in d["files"]) == ["wave.1.json", "yes.1.json", "yes.2.json"]
    for name, k in (("yes.1.json", 0), ("yes.2.json", 1)):
        doc = json.loads((dest / name).read_text())
        assert set(doc) == {"protected", "signature", "payload"}
        assert doc["protected"]["ver"] == "v1" and doc["protected"]["alg"] == "none"
        assert isinstance(doc["protected"]["iat"], int)
        assert doc["signature"] == "0" * 64
        pl = doc["payload"]
        assert set(pl) == {"device_type", "interval_ms", "sensors", "values"}
        assert pl["interval_ms"] == 0.0625 and pl["sensors"] == [{"name": "audio", "units": "wav"}]
        assert pl["values"] == src[k * 16000:(k + 1) * 16000].tolist()
    w = json.loads((dest / "wave.1.json").read_text())["payload"]
    assert w["interval_ms"] == 10 and [s["name"] for s in w["sensors"]] == IMU[:6]
    assert [s["units"] for s in w["sensors"]] == ["g"] * 3 + ["dps"] * 3
    assert len(w["values"]) == 150 and all(len(row) == 6 for row in w["values"])
    from nanoml.pipeline.imu import read_csv
    want = read_csv(tmp_path / "m.csv", IMU[:6])[:150]
    assert np.array_equal(np.array(w["values"], dtype=np.float32).view(np.uint32),
                          want.view(np.uint32))       # the same float32 values
    r = capture("--export", "edge-impulse", "--out", out, "--label", "wave", "--export-to",
                tmp_path / "w", "--json")
    assert [f["export"] for f in doc_of(r)["files"]] == ["wave.1.json"]
    # signed: HS256 and the documented HMAC
    r = run_cli(["capture", "--export", "edge-impulse", "--out", str(out), "--export-to",
                 str(tmp_path / "signed")], env={"NANOML_EI_HMAC_KEY": "secret-key"})
    assert r.exit_code == 0, r.stderr
    for f in sorted((tmp_path / "signed").iterdir()):
        text = f.read_text()
        assert json.loads(text)["protected"]["alg"] == "HS256"
        assert _signature_ok(text, "secret-key") and not _signature_ok(text, "other-key")


def test_ei_document_signature_changes_with_the_data():
    from nanoml.capture.export import ei_document
    e = {"sensor": "mic", "rate_hz": 16000, "board": "nano33ble_sense"}
    a = ei_document(e, np.array([1, 2, 3], np.int16), "k", iat=1)
    b = ei_document(e, np.array([1, 2, 4], np.int16), "k", iat=1)
    assert json.loads(a)["signature"] != json.loads(b)["signature"]
    assert _signature_ok(a, "k") and _signature_ok(b, "k")


# ---------------------------------------------------------------- capture then features

def test_features_reads_the_dataset_with_its_labels(tmp_path):
    from nanoml.model.tflite import load
    from nanoml.pipeline.features import clip_features, model_pipeline
    model = ROOT / "examples" / "keyword" / "keyword_int8.tflite"
    tone_wav(tmp_path / "a.wav", 3, seed=3)
    tone_wav(tmp_path / "b.wav", 2, seed=4)
    out = tmp_path / "data"
    for src, label, count in (("a.wav", "yes", 3), ("b.wav", "no", 2)):
        assert capture("--sim", "--source", tmp_path / src, "--label", label, "--count", count,
                       "--length", 1, "--out", out, "--countdown", 0, "--fast").exit_code == 0
    (out / "no" / "no.2.wav").rename(out / "yes" / "moved.wav")      # relabelled by hand
    (out / "_gaps" / "yes").mkdir(parents=True)
    (out / "_gaps" / "yes" / "yes.9.wav").write_bytes((out / "yes" / "yes.1.wav").read_bytes())
    r = run_cli(["features", str(out), "-m", str(model), "-o", str(tmp_path / "x.npy"),
                 "--labels-out", str(tmp_path / "y.json"), "--json"], timeout=120)
    assert r.exit_code == 0, r.stderr
    y = json.loads((tmp_path / "y.json").read_text())
    files = [Path(f).relative_to(out).as_posix() for f in y["files"]]
    assert files == ["no/no.1.wav", "yes/yes.1.wav", "yes/yes.2.wav", "yes/yes.3.wav",
                     "yes/moved.wav"]
    assert y["classes"] == ["no", "yes"] and y["y"] == [0, 1, 1, 1, 1]
    d = json.loads(r.stdout)
    assert [f["label"] for f in d["files"]] == ["no", "yes", "yes", "yes", "yes"]
    assert d["classes"] == ["no", "yes"] and d["labels_out"] == str(tmp_path / "y.json")
    from test_json_schema import check, schema
    check(d, schema("features/1"), "features of a dataset")
    m = load(model)
    want = clip_features([Path(f) for f in y["files"]], model_pipeline(m),
                         m.input_tensors[0].shape).array
    assert np.array_equal(np.load(tmp_path / "x.npy"), want)


# ---------------------------------------------------------------- other ends of a run

def test_a_source_that_ends_mid_take_keeps_the_whole_takes(tmp_path):
    src = tone_wav(tmp_path / "s.wav", 5)
    out = tmp_path / "d"
    r = capture("--sim", "--source", tmp_path / "s.wav", "--label", "t", "--count", 4, "--length",
                "2", "--out", out, "--countdown", 0, "--fast", "--json")
    assert r.exit_code == 1, r.stderr
    d = doc_of(r)
    assert (d["written"], d["discarded"], d["stopped"]) == (2, 1, "source-ended")
    disk, listed = files_listed(out)
    assert disk == listed == {"t/t.1.wav", "t/t.2.wav"}
    assert np.array_equal(read_wav(out / "t/t.2.wav"), src[32000:64000])


def test_timeout_ends_the_run_and_keeps_the_finished_takes(tmp_path):
    tone_wav(tmp_path / "s.wav", 20)
    out = tmp_path / "d"
    t0 = time.monotonic()
    r = capture("--sim", "--source", tmp_path / "s.wav", "--label", "t", "--count", 10,
                "--length", "1", "--out", out, "--countdown", 0, "--timeout", "2.5", "--json")
    assert time.monotonic() - t0 < 15
    assert r.exit_code == 1 and not r.traceback, r.stderr
    d = doc_of(r)
    assert d["stopped"] == "timeout" and "--timeout 2.5 s passed" in d["error"]["message"]
    disk, listed = files_listed(out)
    assert disk == listed and 1 <= len(listed) == d["written"] < 10


def test_the_live_view_is_drawn_on_a_terminal_only(tmp_path):
    from test_cli_vocabulary import _run_with_tty_stderr
    tone_wav(tmp_path / "s.wav", 3)
    args = ["capture", "--sim", "--source", tmp_path / "s.wav", "--label", "v", "--count", 2,
            "--length", "0.5", "--countdown", "0.3"]
    rc, out, err = _run_with_tty_stderr(*args, "--out", tmp_path / "a")
    assert rc == 0, err
    assert "dBFS" in err and "v: 1/2 takes" in err and "take 2 of 2" in err
    assert "dBFS" not in out and "2 of 2 take(s) written" in out
    rc, out, err = _run_with_tty_stderr(*args, "--out", tmp_path / "b", "--json")
    assert rc == 0 and json.loads(out)["written"] == 2 and "dBFS" not in err


def test_an_imu_column_may_carry_its_unit(tmp_path):
    """The CSV capture writes (`ax[g]`) reads back, in any order, with other columns."""
    from nanoml.pipeline.imu import read_csv
    p = tmp_path / "t.csv"
    p.write_text("t_us,AY[g], ax[g] ,note\n0,0.5,-1.25,x\n10000,2,3,y\n")
    assert read_csv(p, ["ax", "ay"]).tolist() == [[-1.25, 0.5], [3.0, 2.0]]


def test_an_imu_source_gives_its_own_channels_and_rate(tmp_path):
    """Without --rate/--channels, a CSV source's IMU columns and its time column decide
    them (a 9-channel 100 Hz file was labelled 119 Hz with 6 channels before)."""
    import math
    src = tmp_path / "imu.csv"
    rows = [[round(math.sin(i / 7 + k), 4) for k in range(9)] for i in range(300)]
    src.write_text("t_ms,ax,ay,az,gx,gy,gz,mx,my,mz\n" + "".join(
        f"{i * 10}," + ",".join(f"{v:.4f}" for v in r) + "\n" for i, r in enumerate(rows)))
    out = tmp_path / "data"
    r = run_cli(["capture", "--sim", "--source", str(src), "--sensor", "imu", "--label", "w",
                 "--count", "2", "--length", "1", "--out", str(out), "--countdown", "0"],
                timeout=60)
    assert r.exit_code == 0, r.stderr
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(m["rate_hz"], len(m["channels"]), m["samples"]) for m in lines] == [(100.0, 9, 100)] * 2
    got = np.loadtxt(out / "w" / "w.2.csv", delimiter=",", skiprows=1)[:, 1:]
    assert np.array_equal(got.astype(np.float32), np.array(rows[100:200], dtype=np.float32))
