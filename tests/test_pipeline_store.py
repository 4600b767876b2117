"""The pipeline description stored in the model's metadata (nanoml.pipeline.store):
every other field survives the rewrite (nanoml's reader's view before and after,
on every shared model), the copy runs identically in TFLM's host interpreter, the
associated-file zip of TFLite's metadata writer is kept, labels are read from
standard metadata, and corrupt entries are one-line errors."""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, SHARED, shared_model_names, shared_path

from nanoml.model.tflite import ModelError, load_bytes
from nanoml.pipeline import spec, store

GESTURE = EXAMPLES / "gesture" / "gesture_int8.tflite"
LABELS4 = ["silence", "unknown", "yes", "no"]


def _models() -> list[Path]:
    return [SHARED / "models" / n for n in shared_model_names()] + [GESTURE]


def _imu_pipeline(labels=None) -> spec.Pipeline:
    """A valid description (it need not fit the model to be stored)."""
    return spec.from_json({"version": 1, "source": "imu",
                           "imu": {"channels": ["ax", "ay", "az"], "rate_hz": 119,
                                   "offset": [0.0, 0.5, -1.0], "scale": [2.0, 2.0, 4.0]},
                           "window": {"samples": 64, "stride": 16},
                           "tensor": {"dtype": "int8", "zero_point": -3, "input_scale": 0.05},
                           "labels": labels})


def _view(m) -> dict:
    """Everything nanoml's reader sees in a model, except the pipeline entry."""
    def tensor(t):
        return {
            "index": t.index, "name": t.name, "shape": t.shape, "dtype": t.dtype,
            "buffer": t.buffer, "is_variable": t.is_variable,
            "quant": asdict(t.quant) if t.quant else None,
            "data": bytes(t.data) if t.data is not None else None,
            "shape_signature": t.shape_signature}
    return {
        "version": m.version, "description": m.description,
        "opcodes": [asdict(o) for o in m.opcodes],
        "subgraphs": [{"name": sg.name, "inputs": sg.inputs, "outputs": sg.outputs,
                       "tensors": [tensor(t) for t in sg.tensors],
                       "operators": [{"op": o.op, "custom_code": o.custom_code,
                                      "version": o.version, "opcode_index": o.opcode_index,
                                      "inputs": o.inputs, "outputs": o.outputs,
                                      "intermediates": o.intermediates, "options": o.options}
                                     for o in sg.operators]}
                      for sg in m.subgraphs],
        "metadata": {k: v for k, v in m.metadata.items() if k != spec.METADATA_NAME},
        "offline_plan": m.offline_plan, "warnings": m.warnings,
    }


def _offset_in(m, view: memoryview) -> int:
    base = np.frombuffer(m.raw, np.uint8).__array_interface__["data"][0]
    return np.frombuffer(view, np.uint8).__array_interface__["data"][0] - base


def _run(data: bytes, seed: int = 0):
    """Outputs of TFLM's host interpreter on a seeded random input, or the refusal."""
    from tflite_micro.python.tflite_micro import runtime
    m = load_bytes(data)
    try:
        ip = runtime.Interpreter.from_bytes(data, arena_size=8 * 1024 * 1024)
    except Exception as e:  # noqa: BLE001 - the refusal itself is compared
        return ("refused", type(e).__name__)
    rng = np.random.default_rng(seed)
    for i, t in enumerate(m.input_tensors):
        dt = np.dtype(t.dtype)
        x = rng.integers(np.iinfo(dt).min, np.iinfo(dt).max, size=t.shape, dtype=dt) \
            if dt.kind in "iu" else rng.standard_normal(t.shape).astype(dt)
        ip.set_input(x, i)
    ip.invoke()
    return [np.array(ip.get_output(i), copy=True) for i in range(len(m.output_tensors))]


def _same_outputs(a, b) -> bool:
    if isinstance(a, tuple) or isinstance(b, tuple):
        return a == b
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y)
                                    for x, y in zip(a, b))


def test_the_seed_models_are_there():
    """The gesture example always runs, with or without ../shared."""
    assert GESTURE.exists()


@pytest.mark.parametrize("path", _models(), ids=lambda p: p.name)
def test_every_other_field_survives_and_buffers_stay_aligned(path):
    before = load_bytes(path.read_bytes(), str(path))
    pipe = _imu_pipeline()
    out = store.write_pipeline(before.raw, pipe)
    after = load_bytes(out, "copy")
    assert _view(after) == _view(before)
    assert store.read_pipeline(after) == pipe
    assert after.metadata[spec.METADATA_NAME] == pipe.to_bytes()
    for sg in after.subgraphs:
        for t in sg.tensors:
            if t.is_const:
                assert _offset_in(after, t.data) % 16 == 0, (t.index, t.name)


@pytest.mark.parametrize("path", _models(), ids=lambda p: p.name)
def test_the_copy_runs_identically_in_tflm(path):
    data = path.read_bytes()
    if len(data) > 1_000_000:
        pytest.skip("larger than the board's flash: not run (its fields are compared above)")
    copy = store.write_pipeline(data, _imu_pipeline(["a", "b"]))
    ref, got = _run(data), _run(copy)
    assert _same_outputs(ref, got), (ref, got)


def test_a_large_unknown_entry_is_ignored_by_the_host_interpreter():
    """64 KiB of random bytes in an unknown entry: TFLM reads only
    "OfflineMemoryAllocation" by name; the model still runs the same."""
    data = GESTURE.read_bytes()
    noise = bytes(np.random.default_rng(1).integers(0, 256, 65536, dtype=np.uint8))
    copy = _with_entry(data, "some.unknown.entry", noise)
    assert load_bytes(copy).metadata["some.unknown.entry"] == noise
    ref = _run(data)
    assert isinstance(ref, list) and _same_outputs(ref, _run(copy))


def test_replacing_keeps_one_entry_in_the_same_buffer():
    data = GESTURE.read_bytes()
    once = store.write_pipeline(data, _imu_pipeline(["a"]))
    twice = store.write_pipeline(once, _imu_pipeline(["b"]))
    m1, m2 = load_bytes(once), load_bytes(twice)
    assert len(m1.raw) == len(m2.raw)        # same-length labels: the same file size
    assert store.read_pipeline(m2).labels == ["b"]
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    names = [e.name for e in fb.ModelT.InitFromPackedBuf(bytearray(twice), 0).metadata]
    assert names.count(spec.METADATA_NAME.encode()) == 1
    assert len(fb.ModelT.InitFromPackedBuf(bytearray(twice), 0).buffers) == \
        len(fb.ModelT.InitFromPackedBuf(bytearray(once), 0).buffers)


def test_remove_takes_the_entry_out_and_keeps_the_rest():
    data = GESTURE.read_bytes()
    gone = load_bytes(store.remove_pipeline(store.write_pipeline(data, _imu_pipeline())))
    assert spec.METADATA_NAME not in gone.metadata
    assert store.read_pipeline(gone) is None
    assert _view(gone) == _view(load_bytes(data))


def test_corrupt_entries_are_one_line_pipeline_errors():
    data = GESTURE.read_bytes()
    for raw, words in [(b"{not json", "not valid JSON"),
                       (b'{"version": 2, "source": "mic", "window": {}, "tensor": {}}', "version 2"),
                       (b'{"version": 1, "source": "imu", "window": {"samples": 1, "stride": 1},'
                        b' "tensor": {"dtype": "int8"}, "imu": {"channels": ["qq"], "rate_hz": 1}}',
                        "imu channels"),
                       (b"\xff\xfe", "not valid JSON")]:
        m = load_bytes(_with_entry(data, spec.METADATA_NAME, raw))
        with pytest.raises(spec.PipelineError) as e:
            store.read_pipeline(m)
        assert words in e.value.message and "\n" not in e.value.message
        assert e.value.exit_code == 2


def test_buffers_outside_the_flatbuffer_are_refused_before_writing():
    """The > 2 GB format (Buffer.offset/size): TFLM does not read it; one line."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    m = fb.ModelT.InitFromPackedBuf(bytearray(GESTURE.read_bytes()), 0)
    t = next(t for t in m.subgraphs[0].tensors if m.buffers[t.buffer].data is not None)
    b = m.buffers[t.buffer]
    b.offset, b.size, b.data = 64, 16, None
    with pytest.raises(ModelError) as e:
        store.write_pipeline(_pack(m), _imu_pipeline())
    assert "outside the flatbuffer" in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- standard TFLite metadata

def _pack(m) -> bytes:
    import flatbuffers
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _with_entry(data: bytes, name: str, payload: bytes) -> bytes:
    """Add a metadata entry the way TFLite's MetadataPopulator does (object API)."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    m = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    buf = fb.BufferT()
    buf.data = np.frombuffer(payload, np.uint8)
    m.buffers.append(buf)
    e = fb.MetadataT()
    e.name = name.encode()
    e.buffer = len(m.buffers) - 1
    m.metadata = (m.metadata or []) + [e]
    return _pack(m)


def _model_metadata(label_file: str, other_file: str = "readme.txt") -> bytes:
    """A ModelMetadata flatbuffer (tflite-support's metadata_schema.fbs, "M001"): one
    subgraph whose output tensor has a DESCRIPTIONS file and a TENSOR_AXIS_LABELS
    file. Built field by field: ModelMetadata.subgraph_metadata = 3,
    SubGraphMetadata.output_tensor_metadata = 3, TensorMetadata.associated_files = 6,
    AssociatedFile.name = 0, .type = 2 (DESCRIPTIONS 1, TENSOR_AXIS_LABELS 2)."""
    import flatbuffers
    b = flatbuffers.Builder(0)

    def assoc(name: str, kind: int):
        n = b.CreateString(name)
        b.StartObject(5)
        b.PrependUOffsetTRelativeSlot(0, n, 0)
        b.PrependInt8Slot(2, kind, 0)
        return b.EndObject()

    def vec(items):
        b.StartVector(4, len(items), 4)
        for it in reversed(items):
            b.PrependUOffsetTRelative(it)
        return b.EndVector()

    files = vec([assoc(other_file, 1), assoc(label_file, 2)])
    tname = b.CreateString("probabilities")
    b.StartObject(7)
    b.PrependUOffsetTRelativeSlot(0, tname, 0)
    b.PrependUOffsetTRelativeSlot(6, files, 0)
    tensor = b.EndObject()
    outs = vec([tensor])
    b.StartObject(10)
    b.PrependUOffsetTRelativeSlot(3, outs, 0)
    sg = b.EndObject()
    sgs = vec([sg])
    mname = b.CreateString("speech")
    b.StartObject(8)
    b.PrependUOffsetTRelativeSlot(0, mname, 0)
    b.PrependUOffsetTRelativeSlot(3, sgs, 0)
    b.Finish(b.EndObject(), file_identifier=b"M001")
    return bytes(b.Output())


def _append_zip(data: bytes, files: dict[str, bytes]) -> bytes:
    """Append associated files as TFLite's MetadataPopulator does: the model file
    opened as a zip in append mode (offsets counted from the file's start)."""
    out = io.BytesIO(data)
    out.seek(0, os.SEEK_END)
    with zipfile.ZipFile(out, "a") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return out.getvalue()


def _speech_with_standard_metadata(labels_text: bytes, with_entry: bool = True) -> bytes:
    data = shared_path("models", "micro_speech_quantized.tflite").read_bytes()
    if with_entry:
        data = _with_entry(data, "TFLITE_METADATA", _model_metadata("labels.txt"))
    return _append_zip(data, {"readme.txt": b"not labels\nat all\n",
                              "labels.txt": labels_text})


def test_standard_metadata_entry_reads_as_tflite_support_writes_it():
    from nanoml.model.tflite import standard_label_files
    assert standard_label_files(_model_metadata("labels.txt")) == ["labels.txt"]
    assert standard_label_files(b"\x00" * 16) == []
    assert standard_label_files(b"\x08\x00\x00\x00M001\xff\xff\xff\x7f") == []


def test_labels_come_from_the_standard_label_file():
    data = _speech_with_standard_metadata(b"silence\nunknown\n\nyes\nno\n")
    m = load_bytes(data, "speech")
    assert store.read_pipeline(m) is None
    assert store.standard_labels(m) == LABELS4
    p = store.resolve(m, frontend="micro_speech")
    assert p.labels == LABELS4
    # given labels win over standard ones
    assert store.resolve(m, frontend="micro_speech", labels=list("abcd")).labels == list("abcd")


def test_labels_file_without_the_entry_and_wrong_counts():
    m = load_bytes(_speech_with_standard_metadata(b"a\nb\nc\nd\n", with_entry=False))
    assert store.standard_labels(m) == list("abcd")
    m = load_bytes(_speech_with_standard_metadata(b"a\nb\nc\n"))
    assert store.standard_labels(m) == list("abc")
    assert store.resolve(m, frontend="micro_speech").labels is None    # 3 for 4 outputs


def test_the_associated_files_zip_is_kept_with_right_offsets():
    data = _speech_with_standard_metadata(b"silence\nunknown\nyes\nno\n")
    out = store.write_pipeline(data, store.resolve(load_bytes(data), frontend="micro_speech"))
    zf = zipfile.ZipFile(io.BytesIO(out))
    assert zf.testzip() is None
    assert zf.read("labels.txt") == b"silence\nunknown\nyes\nno\n"
    assert sorted(zf.namelist()) == ["labels.txt", "readme.txt"]
    for info in zf.infolist():                       # offsets count from the file's start
        assert out[info.header_offset:info.header_offset + 4] == b"PK\x03\x04"
    m = load_bytes(out)
    assert m.metadata["TFLITE_METADATA"] == _model_metadata("labels.txt")
    assert store.read_pipeline(m).labels == LABELS4
    assert _same_outputs(_run(data), _run(out))


def test_mutated_models_are_refused_in_one_line_or_rewritten_faithfully():
    """Mutants of real models (tests/mutants.py): write_pipeline either refuses with
    a one-line ModelError/UsageError (the reader's refusals, parts the object API
    cannot unpack, constants shorter than their shape) or writes a copy that TFLM's
    host interpreter treats exactly as the original (same status)."""
    from mutants import mutant_set, reference

    from nanoml.errors import NanomlError
    outcomes = {"refused": 0, "written": 0}
    for name, data in mutant_set(120, seed=11):
        try:
            out = store.write_pipeline(data, _imu_pipeline())
        except (ModelError, NanomlError) as e:
            assert "\n" not in str(e), name
            outcomes["refused"] += 1
            continue
        outcomes["written"] += 1
        assert reference(out).status == reference(data).status, name
        assert store.read_pipeline(load_bytes(out)) == _imu_pipeline()
    assert outcomes["written"] >= 20 and outcomes["refused"] >= 20, outcomes


def test_imu_conversion_takes_any_input_scale():
    """An IMU input is quantised from real values in float32: a small input scale
    (int16, 1/32768) must not be refused for a fixed-point multiplier it never uses
    (it was: 'cannot be represented')."""
    from nanoml.pipeline import spec
    conv = spec.conversion_for("int16", 1 / 32768, 0, 1.0, integer=False)
    assert conv.multiplier == 0 and conv.input_scale == 1 / 32768 and conv.qmin == -32768
    with pytest.raises(spec.UsageError):
        spec.conversion_for("int16", 1 / 32768, 0, 1.0)      # the audio path still checks it
