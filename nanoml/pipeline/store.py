"""The pipeline description stored in the model: written into a metadata entry of
the `.tflite` flatbuffer, read back, and merged with command-line overrides.

    data = write_pipeline(model_bytes, pipe)      # a copy with entry "nanoml.pipeline"
    pipe = read_pipeline(model)                   # from a loaded tflite.Model, or None
    pipe = resolve(model, labels=[...], ...)      # stored + overrides, checked

The entry's buffer holds `Pipeline.to_bytes()` (compact JSON, docs/pipeline.md).
Writing re-serialises the flatbuffer with the generated schema object API of the
`tflite_micro` package (as TFLite's own metadata writer does), keeps every buffer
16-byte aligned as TFLite's converter does, replaces an existing entry in place
(same buffer index), and copies the associated files that TFLite's metadata writer
appends to the model as a zip archive. Reading goes through nanoml's model reader
(`tflite.Model.metadata`); nothing here parses the flatbuffer itself. Never prints.
"""

from __future__ import annotations

import io
import math
import zipfile
from dataclasses import replace

from ..errors import UsageError
from ..model.tflite import ModelError
from . import spec
from .spec import Decision, Imu, Pipeline, PipelineError

# bounds on the associated-file zip TFLite's metadata writer appends
MAX_ZIP_MEMBERS = 256
MAX_ZIP_BYTES = 16 * 1024 * 1024
MAX_LABEL_FILE = 1024 * 1024
ALIGN = 16                  # TFLite's converter aligns every buffer's data to 16 bytes


# ---------------------------------------------------------------- reading

def read_pipeline(model) -> Pipeline | None:
    """The description stored in `model` (a loaded `tflite.Model`), None when it has
    none; PipelineError (one line, exit 2) when the entry is corrupt."""
    raw = model.metadata.get(spec.METADATA_NAME)
    if raw is None:
        return None
    try:
        return spec.from_bytes(raw)
    except PipelineError as e:
        raise PipelineError(f"{model.path}: {spec.METADATA_NAME} metadata: {e.message}",
                            hint=e.hint) from None


def _appended_zip(data: bytes) -> zipfile.ZipFile | None:
    """The zip archive appended after the flatbuffer (TFLite's associated files), or None."""
    if b"PK\x05\x06" not in data[-(1 << 16) - 22:]:
        return None
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None
    if not infos or len(infos) > MAX_ZIP_MEMBERS \
            or sum(i.file_size for i in infos) > MAX_ZIP_BYTES:
        return None
    return zf


def standard_labels(model) -> list[str] | None:
    """Labels from TFLite's standard metadata: the label file (TENSOR_AXIS_LABELS)
    that the "TFLITE_METADATA" entry names, read from the zip appended to the
    model; without that entry, the zip's one member named like `labels*.txt`.
    One label a line (blank lines skipped). None when there is none or it cannot
    be read (standard metadata is never required)."""
    from ..model.tflite import STANDARD_METADATA, standard_label_files
    zf = _appended_zip(bytes(model.raw))
    if zf is None:
        return None
    members = {i.filename: i for i in zf.infolist()}
    named = standard_label_files(model.metadata.get(STANDARD_METADATA, b""))
    if named:
        picks = [members[n] for n in named if n in members]
    else:
        picks = [i for n, i in members.items()
                 if "label" in n.rsplit("/", 1)[-1].lower() and n.lower().endswith(".txt")]
        picks = picks if len(picks) == 1 else []
    for info in picks[:1]:
        if info.file_size > MAX_LABEL_FILE:
            return None
        try:
            text = zf.read(info).decode("utf-8")
        except (zipfile.BadZipFile, UnicodeDecodeError, OSError, ValueError, EOFError,
                RuntimeError, NotImplementedError):
            return None
        labels = [line.strip() for line in text.splitlines() if line.strip()]
        return labels or None
    return None


# ---------------------------------------------------------------- writing

class _AlignedBuffer:
    """A BufferT packed with its data aligned to 16 bytes (the object API's own
    Pack aligns uint8 data to 1)."""

    def __init__(self, b, data: bytes | None = None):
        self.b = b
        self.data = data

    def Pack(self, builder):  # noqa: N802 - the object API's name
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
        raw = self.data
        if raw is None and self.b.data is not None:
            raw = bytes(memoryview(self.b.data).cast("B")) if not isinstance(self.b.data, list) \
                else bytes(self.b.data)
        vec = None
        if raw is not None:
            builder.StartVector(1, len(raw), ALIGN)
            builder.head = builder.head - len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            vec = builder.EndVector()
        fb.BufferStart(builder)
        if vec is not None:
            fb.BufferAddData(builder, vec)
        fb.BufferAddOffset(builder, self.b.offset)
        fb.BufferAddSize(builder, self.b.size)
        return fb.BufferEnd(builder)


def _rewrite(model_bytes: bytes, entry: bytes | None) -> bytes:
    """A copy of the model whose `spec.METADATA_NAME` entry holds `entry` (None:
    without the entry), associated files kept."""
    from ..model.tflite import load_bytes
    before = load_bytes(bytes(model_bytes), "model")   # refuses what TFLM cannot read
    short = next((t for sg in before.subgraphs for t in sg.tensors if t.data is not None
                  and t.dtype != "resource" and len(t.data) < t.nbytes), None)
    if short is not None:
        raise ModelError(f"the model cannot be rewritten: constant tensor {short.index} has "
                         f"{len(short.data):,} bytes of data for {short.nbytes:,} (TFLM reads "
                         "the bytes after it, which a rewrite would change)")
    out = _repack(model_bytes, entry)
    after = load_bytes(out, "the rewritten model")
    if _reading(after) != _reading(before):
        raise ModelError("the model cannot be rewritten faithfully: the flatbuffer has "
                         "parts the schema's object API reads differently")
    return _with_zip(out, model_bytes)


def _reading(m) -> tuple:
    """What nanoml's reader (and so TFLM) sees in a model, apart from our entry."""
    tensors = [(t.name, t.shape, t.dtype, t.buffer, t.quant, t.is_variable, t.shape_signature,
                None if t.data is None else bytes(t.data))
               for sg in m.subgraphs for t in sg.tensors]
    ops = [(o.opcode_index, o.op, o.custom_code, o.version, o.inputs, o.outputs,
            o.intermediates, o.options) for o in m.operators]
    return (m.version, m.description, m.opcodes, m.offline_plan, tensors, ops,
            [(sg.name, sg.inputs, sg.outputs) for sg in m.subgraphs],
            {k: v for k, v in m.metadata.items() if k != spec.METADATA_NAME})


def _repack(model_bytes: bytes, entry: bytes | None) -> bytes:
    """The flatbuffer unpacked with the object API, the entry set, packed again."""
    import struct

    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    try:
        m = fb.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    except (struct.error, ValueError, IndexError, TypeError, UnicodeDecodeError,
            OverflowError, MemoryError, AttributeError) as e:
        # a part TFLM never reads (names, signatures, sparsity...) that the reader
        # does not check, but that the object API must unpack to copy it
        raise ModelError(f"the model cannot be rewritten: a part of the flatbuffer that TFLM "
                         f"does not read is corrupt ({type(e).__name__}: {e})") from None
    buffers = list(m.buffers or [])
    if any(b.offset > 1 or b.size for b in buffers):
        raise UsageError("the model keeps buffers outside the flatbuffer (offset/size, the "
                         "> 2 GB format); nanoml cannot rewrite it",
                         hint="convert the model without external buffers")
    name = spec.METADATA_NAME.encode()
    metadata = [e for e in (m.metadata or []) if e.name != name]
    mine = [e for e in (m.metadata or []) if e.name == name]
    packed = [_AlignedBuffer(b) for b in buffers]
    if entry is not None:
        ours = mine[-1] if mine else None
        if ours is not None and ours.buffer < len(buffers) and not any(
                e.buffer == ours.buffer for e in metadata) and not _tensor_buffer(m, ours.buffer):
            packed[ours.buffer] = _AlignedBuffer(buffers[ours.buffer], entry)
        else:
            packed.append(_AlignedBuffer(fb.BufferT(), entry))
            ours = fb.MetadataT()
            ours.name = name
            ours.buffer = len(packed) - 1
        metadata.append(ours)
    elif mine:
        for e in mine:     # the entry goes; its buffer stays (indices must not move), emptied
            if e.buffer < len(buffers) and not any(x.buffer == e.buffer for x in metadata) \
                    and not _tensor_buffer(m, e.buffer):
                packed[e.buffer] = _AlignedBuffer(fb.BufferT())
    m.buffers = packed
    m.metadata = metadata or None
    builder = flatbuffers.Builder(len(model_bytes) + len(entry or b"") + 1024)
    try:
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    except (struct.error, ValueError, IndexError, TypeError, OverflowError, MemoryError,
            AttributeError) as e:
        raise ModelError(f"the model cannot be rewritten: a part of the flatbuffer that TFLM "
                         f"does not read is corrupt ({type(e).__name__}: {e})") from None
    return bytes(builder.Output())


def _tensor_buffer(m, index: int) -> bool:
    """Whether a tensor of any subgraph uses buffer `index` (then it is not ours to replace)."""
    return any(t.buffer == index for sg in (m.subgraphs or []) for t in (sg.tensors or []))


def _with_zip(flatbuffer: bytes, original: bytes) -> bytes:
    """`flatbuffer` followed by the associated files appended to `original` (a new
    archive whose offsets are right for the new file, as TFLite's writer makes it)."""
    zf = _appended_zip(original)
    if zf is None:
        return flatbuffer
    out = io.BytesIO()
    out.write(flatbuffer)
    try:
        with zipfile.ZipFile(out, "a") as dst:
            for info in zf.infolist():
                dst.writestr(info, zf.read(info))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError,
            NotImplementedError) as e:
        raise UsageError(f"cannot copy the model's associated files (zip appended to it): {e}",
                         hint="remove them or repair the model") from None
    return out.getvalue()


def write_pipeline(model_bytes: bytes, pipeline: Pipeline) -> bytes:
    """A copy of the model with `pipeline` in its metadata entry `spec.METADATA_NAME`
    (an existing one replaced)."""
    return _rewrite(model_bytes, pipeline.to_bytes())


def remove_pipeline(model_bytes: bytes) -> bytes:
    """A copy of the model without the `spec.METADATA_NAME` entry."""
    return _rewrite(model_bytes, None)


# ---------------------------------------------------------------- building and overriding

def parse_params(kind: str, items: list[str]) -> dict:
    """`name=value` strings into typed front-end parameters of preset `kind`."""
    spec.check_frontend(kind, {})          # an unknown or planned front end: one line
    base = spec.FRONTEND_PRESETS[kind]
    out: dict = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise UsageError(f"--frontend-param {item!r} is not name=value",
                             hint="e.g. --frontend-param window_step_ms=20")
        if name not in base:
            raise UsageError(f"the {kind} front end has no parameter {name!r}",
                             hint="parameters: " + ", ".join(base))
        default = base[name]
        try:
            if isinstance(default, bool):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                out[name] = value.lower() in ("true", "1", "yes")
            elif isinstance(default, int):
                out[name] = int(value)
            else:
                out[name] = float(value)
        except ValueError:
            kind_of = "true or false" if isinstance(default, bool) else \
                "an integer" if isinstance(default, int) else "a number"
            raise UsageError(f"--frontend-param {name}={value}: must be {kind_of}",
                             hint=f"the default is {default}") from None
    return out


def _only_input(model):
    ins = model.input_tensors
    if len(ins) != 1:
        raise UsageError(f"{model.path}: the model has {len(ins)} input tensors; a pipeline "
                         "fills exactly one", hint="use a model with one input tensor")
    return ins[0]


def _conversion(t, source: str, feature_scale: float) -> spec.TensorConversion:
    q = t.quant
    scale, zp = (q.scale[0], q.zero_point[0]) if q else (None, None)
    if source == "mic":
        return spec.conversion_for(t.dtype, scale, zp, feature_scale)
    # IMU values are real numbers (normalised): quantised with the input's scale
    conv = spec.conversion_for(t.dtype, scale, zp, 1.0, integer=False)
    return replace(conv, feature_scale=1.0, multiplier=0)


def _frames(t, channels: int, what: str) -> int:
    if t.elements == 0 or t.elements % channels:
        raise UsageError(f"input {t.shape} holds {t.elements} values, not a multiple of the "
                         f"{channels} channels of {what}",
                         hint="check the front end's channels or the IMU channel list")
    return t.elements // channels


def _fresh(model, t, *, frontend, imu, rate, frontend_params) -> Pipeline:
    """A new description shaped for the model's input tensor."""
    if imu is not None:
        channels = list(imu)
        if not channels or len(set(channels)) != len(channels) \
                or any(c not in spec.IMU_CHANNELS for c in channels):
            raise UsageError(f"--imu {','.join(channels)}: channels must be distinct names "
                             f"from {', '.join(spec.IMU_CHANNELS)}", hint="e.g. --imu ax,ay,az")
        frames = _frames(t, len(channels), "the IMU")
        rate_hz = float(rate) if rate else 119.0
        return Pipeline(source="imu", window={"samples": frames, "stride": frames,
                                              "frames": frames},
                        tensor=_conversion(t, "imu", 1.0), imu=Imu(channels, rate_hz))
    kind = frontend or "micro_speech"
    params = dict(frontend_params or {})
    if rate:
        params["sample_rate"] = int(rate) if float(rate).is_integer() else rate
    fe = spec.check_frontend(kind, params)
    frames = _frames(t, int(fe.params["num_channels"]), f"the {kind} front end")
    return Pipeline(source="mic", window={"frames": frames,
                                          "stride_ms": spec.DEFAULT_AUDIO_STRIDE_MS},
                    tensor=_conversion(t, "mic", _FEATURE_SCALES[kind]), frontend=fe,
                    decision=Decision())


_FEATURE_SCALES = {"micro_speech": spec.MICRO_SPEECH_FEATURE_SCALE}


def resolve(model, *, frontend: str | None = None, frontend_params: dict | None = None,
            labels: list[str] | None = None, stride_ms: int | None = None,
            imu: list[str] | None = None, rate: float | None = None, stride: int | None = None,
            offset: list[float] | None = None, scale: list[float] | None = None,
            decision: bool | None = None, threshold: int | None = None,
            average_window_ms: int | None = None, suppression_ms: int | None = None,
            minimum_count: int | None = None, standard: bool = True) -> Pipeline | None:
    """The model's pipeline: the stored description (`read_pipeline`) with the
    given overrides, checked against the model's input and output tensors
    (`spec.check_against`). None when the model has none and no override makes
    one (`frontend` or `imu`). Labels: `labels`,
    else the stored ones, else those of TFLite's standard metadata (when their count
    is the output size). `decision`: True/False turns smoothing on/off; a smoothing
    figure (threshold, ...) turns it on."""
    p = read_pipeline(model)
    if p is None and frontend is None and imu is None:
        if any(v is not None for v in (frontend_params, rate, stride_ms, stride, offset, scale)):
            raise UsageError("pipeline options given, but the model has no pipeline",
                             hint="add --frontend micro_speech or --imu ax,ay,az,...")
        return None
    t = _only_input(model)
    kind_changed = (frontend is not None and (p is None or p.frontend is None
                                              or p.frontend.kind != frontend)) \
        or (imu is not None and (p is None or p.imu is None or p.imu.channels != list(imu)))
    if p is None or kind_changed:
        if frontend is not None and imu is not None:
            raise UsageError("--frontend and --imu exclude each other",
                             hint="a pipeline has one source: the microphone or the IMU")
        base_labels = p.labels if p is not None else None
        p = _fresh(model, t, frontend=frontend, imu=imu, rate=rate,
                   frontend_params=frontend_params)
        p.labels = base_labels
    elif p.source == "mic" and (frontend_params or rate):
        params = {**p.frontend.params, **(frontend_params or {})}
        if rate:
            params["sample_rate"] = int(rate) if float(rate).is_integer() else rate
        p = replace(p, frontend=spec.check_frontend(p.frontend.kind, params))
        p.window = {**p.window, "frames": _frames(t, p.channels, f"the {p.frontend.kind} "
                                                  "front end")}
    elif p.source == "imu" and frontend_params:
        raise UsageError("--frontend-param changes an audio front end; this pipeline is an "
                         "IMU one", hint="use --frontend micro_speech to make an audio pipeline")
    elif p.source == "imu" and rate:
        p = replace(p, imu=replace(p.imu, rate_hz=float(rate)))
    outputs = sum(o.elements for o in model.output_tensors)
    if labels is not None and len(labels) != outputs:
        raise UsageError(f"{len(labels)} labels for a model with {outputs} output values",
                         hint=f"give {outputs} labels, one per output value, in output order")
    p = _window(p, stride_ms, stride)
    p = _normalisation(p, offset, scale)
    p = _decision(p, decision, threshold, average_window_ms, suppression_ms, minimum_count)
    if labels is not None:
        p = replace(p, labels=list(labels))
    elif p.labels is None and standard:
        found = standard_labels(model)
        if found and len(found) == outputs and all(0 < len(s) <= 64 for s in found):
            p = replace(p, labels=found)
    # the merged description must be one the spec accepts, and fit the model
    p = spec.from_json(p.to_json())
    spec.check_against(p, t.shape, t.dtype, outputs)
    return p


def _window(p: Pipeline, stride_ms, stride) -> Pipeline:
    if stride_ms is not None:
        if p.source != "mic":
            raise UsageError("--stride-ms is for audio pipelines",
                             hint="an IMU pipeline takes --stride SAMPLES")
        p = replace(p, window={**p.window, "stride_ms": int(stride_ms)})
    if stride is not None:
        if p.source != "imu":
            raise UsageError("--stride is for IMU pipelines (samples)",
                             hint="an audio pipeline takes --stride-ms MS")
        p = replace(p, window={**p.window, "stride": int(stride)})
    return p


def _normalisation(p: Pipeline, offset, scale) -> Pipeline:
    if offset is None and scale is None:
        return p
    if p.source != "imu":
        raise UsageError("--offset/--scale normalise IMU channels",
                         hint="use them with --imu ax,ay,az,...")
    n = len(p.imu.channels)
    for name, v in (("--offset", offset), ("--scale", scale)):
        if v is not None and (len(v) != n or not all(math.isfinite(x) for x in v)):
            raise UsageError(f"{name} needs {n} finite numbers, one per channel "
                             f"({','.join(p.imu.channels)})", hint=f"e.g. {name} " +
                             ",".join(["0"] * n if name == "--offset" else ["1"] * n))
    if scale is not None and any(x == 0 for x in scale):
        raise UsageError("--scale must not contain 0", hint="values are divided by it")
    imu = replace(p.imu, offset=list(offset) if offset is not None else p.imu.offset,
                  scale=list(scale) if scale is not None else p.imu.scale)
    return replace(p, imu=imu)


def _decision(p: Pipeline, on, threshold, average_window_ms, suppression_ms,
              minimum_count) -> Pipeline:
    figures = {"threshold": threshold, "average_window_ms": average_window_ms,
               "suppression_ms": suppression_ms, "minimum_count": minimum_count}
    given = {k: v for k, v in figures.items() if v is not None}
    if on is False:
        if given:
            raise UsageError("--no-decision with a smoothing option "
                             f"(--{next(iter(given)).replace('_', '-')})",
                             hint="leave out one or the other")
        return replace(p, decision=None)
    if on is None and not given:
        return p
    d = p.decision or Decision()
    return replace(p, decision=replace(d, **{k: int(v) for k, v in given.items()}))
