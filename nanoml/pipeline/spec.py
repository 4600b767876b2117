"""The pipeline description: what turns a sensor stream into the model's input and
its outputs into decisions. One source of truth: stored in the model (metadata
entry `METADATA_NAME`), rendered into the firmware's config, and read by the host
twin (features, sim, validate, monitor, profile).

JSON form (version 1, documented in docs/pipeline.md)::

    {"version": 1,
     "source": "mic" | "imu",
     "frontend": {"kind": "micro_speech", "params": {...}} | null,
     "window": {"frames": 49, "stride_ms": 100}            # mic
             | {"samples": 119, "stride": 119},           # imu
     "imu": {"channels": ["ax", ...], "rate_hz": 119,
             "offset": [...], "scale": [...]} | null,
     "tensor": {"dtype": "int8", "feature_scale": 0.0390625,
                "multiplier": M, "shift": S, "zero_point": Z, "qmin": -128, "qmax": 127},
     "decision": {"average_window_ms": 1000, "threshold": 200,
                  "suppression_ms": 1500, "minimum_count": 3, "ignore": [...]} | null,
     "labels": ["silence", "unknown", "yes", "no"] | null}

Feature-to-tensor conversion (audio, integer arithmetic, identical on the board
and on the host): for a front-end value `v` (uint16),
``q = clamp(zero_point + ((v * multiplier + (1 << (shift - 1))) >> shift), qmin, qmax)``
where ``multiplier / 2**shift`` is ``feature_scale / input_scale`` (the model's
input quantization) rounded to `shift` fractional bits.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from ..errors import InputError, UsageError

VERSION = 1
METADATA_NAME = "nanoml.pipeline"
SOURCES = ("mic", "imu")
CONVERSION_SHIFT = 24

# TFLM's micro front end with the parameters TFLM's micro_speech training uses
# (tensorflow/examples/speech_commands, --preprocess=micro; the audio_microfrontend
# op's arguments). Every one can be overridden.
MICRO_SPEECH = {
    "sample_rate": 16000,
    "window_size_ms": 30,
    "window_step_ms": 20,
    "num_channels": 40,
    "upper_band_limit": 7500.0,
    "lower_band_limit": 125.0,
    "smoothing_bits": 10,
    "even_smoothing": 0.025,
    "odd_smoothing": 0.06,
    "min_signal_remaining": 0.05,
    "enable_pcan": True,
    "pcan_strength": 0.95,
    "pcan_offset": 80.0,
    "gain_bits": 21,
    "enable_log": True,
    "scale_shift": 6,
    "out_scale": 1,
}
# Feature units per front-end step as micro_speech training feeds the model:
# the op's uint16 output times 10/256.
MICRO_SPEECH_FEATURE_SCALE = 10.0 / 256.0

FRONTEND_PRESETS: dict[str, dict] = {"micro_speech": MICRO_SPEECH}
# Presets the design leaves room for but that are not built yet.
FRONTEND_PLANNED = ("mfcc",)

# TFLM micro_speech's RecognizeCommands defaults (scores as uint8 0..255).
DEFAULT_DECISION = {"average_window_ms": 1000, "threshold": 200, "suppression_ms": 1500,
                    "minimum_count": 3, "ignore": ["silence", "unknown", "_silence_",
                                                   "_unknown_", "background"]}
DEFAULT_AUDIO_STRIDE_MS = 100
IMU_CHANNELS = ("ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz")
IMU_UNITS = {"a": "g", "g": "dps", "m": "uT"}


class PipelineError(InputError):
    """A pipeline description that is corrupt or does not match its model."""


@dataclass
class Frontend:
    kind: str
    params: dict

    def param(self, name: str):
        return self.params[name]


@dataclass
class TensorConversion:
    dtype: str                      # the model input's dtype: int8, uint8, int16 or float32
    feature_scale: float = 1.0      # real units per front-end step (audio) or 1.0 (imu)
    multiplier: int = 0             # audio, integer types: see the module docstring
    shift: int = CONVERSION_SHIFT
    zero_point: int = 0
    qmin: int = -128
    qmax: int = 127
    input_scale: float = 1.0        # the model's input quantization (informational)


@dataclass
class Decision:
    average_window_ms: int = 1000
    threshold: int = 200
    suppression_ms: int = 1500
    minimum_count: int = 3
    ignore: list[str] = field(default_factory=lambda: list(DEFAULT_DECISION["ignore"]))


@dataclass
class Imu:
    channels: list[str]
    rate_hz: float
    offset: list[float] | None = None
    scale: list[float] | None = None


@dataclass
class Pipeline:
    source: str
    window: dict
    tensor: TensorConversion
    frontend: Frontend | None = None
    imu: Imu | None = None
    decision: Decision | None = None
    labels: list[str] | None = None
    version: int = VERSION

    # -- derived ------------------------------------------------------------
    @property
    def frames(self) -> int:
        return int(self.window["frames"])

    @property
    def channels(self) -> int:
        if self.source == "mic":
            return int(self.frontend.params["num_channels"])
        return len(self.imu.channels)

    @property
    def sample_rate(self) -> float:
        return float(self.frontend.params["sample_rate"]) if self.source == "mic" \
            else float(self.imu.rate_hz)

    @property
    def step_samples(self) -> int:
        """Audio: samples per front-end step (one feature frame)."""
        p = self.frontend.params
        return int(p["sample_rate"] * p["window_step_ms"] // 1000)

    @property
    def window_samples(self) -> int:
        p = self.frontend.params
        return int(p["sample_rate"] * p["window_size_ms"] // 1000)

    @property
    def stride_frames(self) -> int:
        """Audio: feature frames between inferences."""
        step = self.frontend.params["window_step_ms"]
        return max(1, int(round(self.window["stride_ms"] / step)))

    def label(self, i: int) -> str:
        if self.labels and 0 <= i < len(self.labels):
            return self.labels[i]
        return str(i)

    # -- (de)serialisation ----------------------------------------------------
    def to_json(self) -> dict:
        return {"version": self.version, "source": self.source,
                "frontend": asdict(self.frontend) if self.frontend else None,
                "window": {k: v for k, v in self.window.items()
                           if not (self.source == "imu" and k == "frames")},  # derived
                "imu": asdict(self.imu) if self.imu else None,
                "tensor": asdict(self.tensor),
                "decision": asdict(self.decision) if self.decision else None,
                "labels": list(self.labels) if self.labels is not None else None}

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"),
                          allow_nan=False).encode()


# ---------------------------------------------------------------------------
# validation helpers

def _fail(msg: str) -> PipelineError:
    return PipelineError(f"pipeline description: {msg}",
                         hint="rewrite it with `nanoml pipeline MODEL ... --out OUT.tflite`")


def _keys(obj, allowed: set[str], where: str, required: set[str] = frozenset()) -> dict:
    if not isinstance(obj, dict):
        raise _fail(f"{where} must be an object")
    unknown = set(obj) - allowed
    if unknown:
        raise _fail(f"{where}: unknown key {sorted(unknown)[0]!r}")
    missing = set(required) - set(obj)
    if missing:
        raise _fail(f"{where}: missing key {sorted(missing)[0]!r}")
    return obj


def _num(v, where: str, lo: float, hi: float, integer: bool = False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _fail(f"{where} must be a finite number (got {v!r})")
    if integer and int(v) != v:
        raise _fail(f"{where} must be an integer (got {v!r})")
    if not lo <= v <= hi:
        raise _fail(f"{where} = {v!r} is outside {lo:g}..{hi:g}")
    return int(v) if integer else float(v)


# Parameter ranges of the micro front end (what the C implementation accepts).
_MICRO_RANGES = {
    "sample_rate": (1000, 48000, True), "window_size_ms": (1, 1000, True),
    "window_step_ms": (1, 1000, True), "num_channels": (1, 128, True),
    "upper_band_limit": (1.0, 24000.0, False), "lower_band_limit": (0.0, 24000.0, False),
    "smoothing_bits": (0, 16, True), "even_smoothing": (0.0, 1.0, False),
    "odd_smoothing": (0.0, 1.0, False), "min_signal_remaining": (0.0, 1.0, False),
    "pcan_strength": (0.0, 10.0, False), "pcan_offset": (0.0, 1e6, False),
    "gain_bits": (1, 30, True), "scale_shift": (0, 15, True), "out_scale": (1, 65535, True),
}


def check_frontend(kind: str, params: dict) -> Frontend:
    if kind in FRONTEND_PLANNED:
        raise UsageError(f"front end {kind!r} is not available yet",
                         hint="available: " + ", ".join(FRONTEND_PRESETS))
    if kind not in FRONTEND_PRESETS:
        raise _fail(f"unknown front end {kind!r} (available: {', '.join(FRONTEND_PRESETS)})")
    base = FRONTEND_PRESETS[kind]
    _keys(params, set(base), f"frontend {kind} params")
    out = dict(base)
    for k, v in params.items():
        if isinstance(base[k], bool):
            if not isinstance(v, bool):
                raise _fail(f"frontend param {k} must be true or false (got {v!r})")
            out[k] = v
        else:
            lo, hi, integer = _MICRO_RANGES[k]
            out[k] = _num(v, f"frontend param {k}", lo, hi, integer)
    if out["lower_band_limit"] >= out["upper_band_limit"]:
        raise _fail("frontend lower_band_limit must be below upper_band_limit")
    if out["upper_band_limit"] > out["sample_rate"] / 2:
        raise _fail("frontend upper_band_limit is above the Nyquist frequency")
    if out["window_step_ms"] > out["window_size_ms"]:
        raise _fail("frontend window_step_ms must not exceed window_size_ms")
    return Frontend(kind, out)


def conversion_for(dtype: str, input_scale: float | None, input_zero_point: int | None,
                   feature_scale: float, integer: bool = True) -> TensorConversion:
    """The feature-to-tensor conversion for a model input of `dtype`. `integer`
    False (IMU: real values quantised in float32) leaves the fixed-point
    multiplier out (0), so no input scale is too small for it."""
    ranges = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
    if dtype == "float32":
        return TensorConversion(dtype=dtype, feature_scale=feature_scale, multiplier=0,
                                zero_point=0, qmin=0, qmax=0, input_scale=1.0)
    if dtype not in ranges:
        raise UsageError(f"a pipeline cannot fill a {dtype} input tensor",
                         hint="the model's input must be int8, uint8, int16 or float32")
    if not input_scale or not math.isfinite(input_scale) or input_scale <= 0:
        raise UsageError(f"the model's {dtype} input has no usable quantization scale",
                         hint="re-convert the model with input quantization")
    ratio = feature_scale / input_scale
    mult = int(round(ratio * (1 << CONVERSION_SHIFT))) if integer else 0
    if integer and not 0 < mult < 2 ** 31:
        raise UsageError(f"feature scale {feature_scale:g} / input scale {input_scale:g} "
                         "cannot be represented", hint="check the model's input quantization")
    lo, hi = ranges[dtype]
    return TensorConversion(dtype=dtype, feature_scale=feature_scale, multiplier=mult,
                            shift=CONVERSION_SHIFT, zero_point=int(input_zero_point or 0),
                            qmin=lo, qmax=hi, input_scale=float(input_scale))


def from_json(obj) -> Pipeline:
    """Parse and check a pipeline description (raises PipelineError, one line)."""
    _keys(obj, {"version", "source", "frontend", "window", "imu", "tensor", "decision",
                "labels"}, "pipeline", {"version", "source", "window", "tensor"})
    if obj["version"] != VERSION:
        raise _fail(f"version {obj['version']!r} is not supported (this nanoml reads {VERSION})")
    source = obj["source"]
    if source not in SOURCES:
        raise _fail(f"source {source!r} is not one of {', '.join(SOURCES)}")
    frontend = imu = None
    w = obj["window"]
    if source == "mic":
        fe = _keys(obj.get("frontend"), {"kind", "params"}, "frontend", {"kind", "params"})
        frontend = check_frontend(fe["kind"], fe["params"])
        _keys(w, {"frames", "stride_ms"}, "window", {"frames", "stride_ms"})
        window = {"frames": _num(w["frames"], "window frames", 1, 10000, True),
                  "stride_ms": _num(w["stride_ms"], "window stride_ms", 1, 60000, True)}
    else:
        im = _keys(obj.get("imu"), {"channels", "rate_hz", "offset", "scale"}, "imu",
                   {"channels", "rate_hz"})
        ch = im["channels"]
        if not isinstance(ch, list) or not ch or any(c not in IMU_CHANNELS for c in ch) \
                or len(set(ch)) != len(ch):
            raise _fail(f"imu channels must be distinct names from {', '.join(IMU_CHANNELS)}")
        norm = {}
        for k in ("offset", "scale"):
            v = im.get(k)
            if v is not None:
                if not isinstance(v, list) or len(v) != len(ch):
                    raise _fail(f"imu {k} must list one number per channel ({len(ch)})")
                norm[k] = [_num(x, f"imu {k}", -1e9, 1e9) for x in v]
                if k == "scale" and any(x == 0 for x in norm[k]):
                    raise _fail("imu scale must not be 0")
        imu = Imu(list(ch), _num(im["rate_hz"], "imu rate_hz", 1, 10000), norm.get("offset"),
                  norm.get("scale"))
        _keys(w, {"samples", "stride"}, "window", {"samples", "stride"})
        window = {"samples": _num(w["samples"], "window samples", 1, 100000, True),
                  "stride": _num(w["stride"], "window stride", 1, 100000, True)}
        window["frames"] = window["samples"]
    t = _keys(obj["tensor"], set(TensorConversion.__dataclass_fields__), "tensor", {"dtype"})
    try:
        tensor = TensorConversion(**t)
    except TypeError as e:
        raise _fail(f"tensor: {e}") from None
    if tensor.dtype not in ("int8", "uint8", "int16", "float32"):
        raise _fail(f"tensor dtype {tensor.dtype!r} is not int8, uint8, int16 or float32")
    for k in ("multiplier", "shift", "zero_point", "qmin", "qmax"):
        _num(getattr(tensor, k), f"tensor {k}", -2 ** 31, 2 ** 31 - 1, True)
    for k in ("feature_scale", "input_scale"):
        _num(getattr(tensor, k), f"tensor {k}", 0, 1e30)
    if tensor.dtype != "float32" and not (1 <= tensor.shift <= 31 and tensor.qmin < tensor.qmax):
        raise _fail("tensor shift must be 1..31 and qmin below qmax")
    decision = None
    if obj.get("decision") is not None:
        d = _keys(obj["decision"], set(Decision.__dataclass_fields__), "decision")
        decision = Decision(
            average_window_ms=_num(d.get("average_window_ms", 1000), "decision average_window_ms",
                                   1, 60000, True),
            threshold=_num(d.get("threshold", 200), "decision threshold", 0, 255, True),
            suppression_ms=_num(d.get("suppression_ms", 1500), "decision suppression_ms",
                                0, 600000, True),
            minimum_count=_num(d.get("minimum_count", 3), "decision minimum_count", 1, 1000, True),
            ignore=_strings(d.get("ignore", DEFAULT_DECISION["ignore"]), "decision ignore"))
    labels = obj.get("labels")
    if labels is not None:
        labels = _strings(labels, "labels")
        if not labels:
            raise _fail("labels must not be empty")
    return Pipeline(source=source, window=window, tensor=tensor, frontend=frontend, imu=imu,
                    decision=decision, labels=labels, version=VERSION)


def _strings(v, where: str) -> list[str]:
    if not isinstance(v, list) or any(not isinstance(s, str) or not s or len(s) > 64 for s in v):
        raise _fail(f"{where} must be a list of non-empty names (at most 64 characters)")
    return list(v)


def from_bytes(data: bytes) -> Pipeline:
    if len(data) > 1 << 20:
        raise _fail("entry is larger than 1 MiB")
    try:
        obj = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _fail(f"not valid JSON ({e})") from None
    return from_json(obj)


def check_against(p: Pipeline, input_shape: list[int], input_dtype: str,
                  output_elements: int) -> None:
    """Raise PipelineError when the description does not match the model's tensors."""
    elements = 1
    for d in input_shape:
        elements *= max(int(d), 0)
    need = p.frames * p.channels
    if need != elements:
        raise _fail(f"{p.frames} frames x {p.channels} channels = {need} values, but the "
                    f"model's input {input_shape} holds {elements}")
    if p.tensor.dtype != input_dtype:
        raise _fail(f"tensor dtype {p.tensor.dtype} does not match the model's input "
                    f"({input_dtype})")
    if p.labels is not None and len(p.labels) != output_elements:
        raise _fail(f"{len(p.labels)} labels for a model with {output_elements} outputs")
