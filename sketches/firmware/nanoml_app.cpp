// nanoml firmware helpers without Arduino or TFLM: see nanoml_app.h.
#include "nanoml_app.h"

#include <string.h>

namespace nanoml {

size_t type_size(int type) {
  switch (type) {
    case kTypeFloat32:
    case kTypeInt32:
      return 4;
    case kTypeInt64:
      return 8;
    case kTypeInt16:
    case kTypeFloat16:
      return 2;
    case kTypeUInt8:
    case kTypeInt8:
    case kTypeBool:
      return 1;
    default:
      return 0;
  }
}

const char* type_name(int type) {
  switch (type) {
    case kTypeFloat32: return "float32";
    case kTypeInt32: return "int32";
    case kTypeUInt8: return "uint8";
    case kTypeInt64: return "int64";
    case kTypeBool: return "bool";
    case kTypeInt16: return "int16";
    case kTypeInt8: return "int8";
    case kTypeFloat16: return "float16";
    default: return "unknown";
  }
}

int schema_type_code(int type) {
  switch (type) {
    case kTypeFloat32: return kDtypeFloat32;
    case kTypeUInt8: return kDtypeUint8;
    case kTypeInt16: return kDtypeInt16;
    case kTypeInt8: return kDtypeInt8;
    default: return -1;   // synthetic_fill: bytes
  }
}

size_t element_count(const TensorInfo& t) {
  const size_t es = type_size(t.type);
  return es ? t.bytes / es : 0;
}

int channel_dim(const TensorInfo& t) {
  if (!t.dims) return 1;
  for (int i = t.ndims - 1; i >= 0; --i) {
    if (t.dims[i] > 1) return t.dims[i];
  }
  return 1;
}

size_t format_tensor(const TensorInfo& t, char* out, size_t cap) {
  if (cap == 0) return 0;
  size_t n = 0;
  const char* name = type_name(t.type);
  const size_t name_len = strlen(name);
  if (name_len + 2 > cap) {  // name, ':' and the NUL
    out[0] = '\0';
    return 0;
  }
  memcpy(out, name, name_len);
  n = name_len;
  out[n++] = ':';
  const int nd = (t.dims && t.ndims > 0) ? t.ndims : 0;  // a scalar: "<dtype>:"
  for (int i = 0; i < nd; ++i) {
    char tmp[11];
    const int d = t.dims[i] < 0 ? 0 : t.dims[i];
    const size_t k = detail::utoa(static_cast<uint32_t>(d), tmp);
    if (n + k + (i ? 1 : 0) + 1 > cap) {
      out[0] = '\0';
      return 0;
    }
    if (i) out[n++] = 'x';
    memcpy(out + n, tmp, k);
    n += k;
  }
  if (n + 1 > cap) {
    out[0] = '\0';
    return 0;
  }
  out[n] = '\0';
  return n;
}

namespace {

// Round half away from zero and saturate to [lo, hi] (NaN -> 0).
int32_t round_saturate(float v, int32_t lo, int32_t hi) {
  if (!(v == v)) return 0;
  if (v <= static_cast<float>(lo)) return lo;
  if (v >= static_cast<float>(hi)) return hi;
  const int32_t r = static_cast<int32_t>(v >= 0.0f ? v + 0.5f : v - 0.5f);
  return r < lo ? lo : (r > hi ? hi : r);
}

// Like TFLite: q = round(x / scale) + zero_point, then saturate.
int32_t quantize(const TensorInfo& t, float x, int32_t lo, int32_t hi) {
  if (t.scale == 0.0f) return round_saturate(x, lo, hi);
  // Rounded in a range wide enough for any 32-bit zero point, then shifted.
  const int64_t r = round_saturate(x / t.scale, -2147483647 - 1, 2147483520);
  const int64_t q = r + t.zero_point;
  return q < lo ? lo : (q > hi ? hi : static_cast<int32_t>(q));
}

}  // namespace

void store_value(TensorInfo& t, size_t i, float x) {
  switch (t.type) {
    case kTypeFloat32:
      memcpy(t.data + 4 * i, &x, 4);
      break;
    case kTypeInt8: {
      const int8_t q = static_cast<int8_t>(quantize(t, x, -128, 127));
      memcpy(t.data + i, &q, 1);
      break;
    }
    case kTypeUInt8:
      t.data[i] = static_cast<uint8_t>(quantize(t, x, 0, 255));
      break;
    case kTypeInt16: {
      const int16_t q = static_cast<int16_t>(quantize(t, x, -32768, 32767));
      memcpy(t.data + 2 * i, &q, 2);
      break;
    }
    case kTypeInt32: {
      // float -> int32 saturates at the largest float below 2^31.
      const int32_t q = quantize(t, x, -2147483647 - 1, 2147483520);
      memcpy(t.data + 4 * i, &q, 4);
      break;
    }
    default:
      break;  // other types: not written
  }
}

void store_pcm16(TensorInfo& t, size_t i, int16_t s) {
  if (t.type == kTypeInt16 && t.scale == 0.0f) {
    memcpy(t.data + 2 * i, &s, 2);
    return;
  }
  store_value(t, i, static_cast<float>(s) * (1.0f / 32768.0f));
}

int32_t load_raw(const TensorInfo& t, size_t i) {
  switch (t.type) {
    case kTypeInt8: {
      int8_t v;
      memcpy(&v, t.data + i, 1);
      return v;
    }
    case kTypeUInt8:
      return t.data[i];
    case kTypeInt16: {
      int16_t v;
      memcpy(&v, t.data + 2 * i, 2);
      return v;
    }
    case kTypeInt32: {
      int32_t v;
      memcpy(&v, t.data + 4 * i, 4);
      return v;
    }
    case kTypeBool:
      return t.data[i] ? 1 : 0;
    case kTypeFloat32: {
      float f;
      memcpy(&f, t.data + 4 * i, 4);
      return round_saturate(f, -2147483647 - 1, 2147483520);
    }
    default:
      return 0;
  }
}

float load_value(const TensorInfo& t, size_t i) {
  if (t.type == kTypeFloat32) {
    float f;
    memcpy(&f, t.data + 4 * i, 4);
    return f;
  }
  const int32_t q = load_raw(t, i);
  if (t.scale != 0.0f) {
    return static_cast<float>(q - t.zero_point) * t.scale;
  }
  return static_cast<float>(q);
}

bool is_quantized_int(const TensorInfo& t) {
  return t.scale != 0.0f && (t.type == kTypeInt8 || t.type == kTypeUInt8 ||
                             t.type == kTypeInt16 || t.type == kTypeInt32);
}

size_t argmax(const TensorInfo& t) {
  const size_t n = element_count(t);
  size_t best = 0;
  float best_v = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    const float v = load_value(t, i);
    if (i == 0 || v > best_v) {
      best = i;
      best_v = v;
    }
  }
  return best;
}

// ---------------------------------------------------------------------------

void WindowFiller::attach(TensorInfo* t) {
  t_ = t;
  size_ = t ? element_count(*t) : 0;
  pos_ = 0;
}

size_t WindowFiller::push(const float* v, size_t k) {
  size_t taken = 0;
  while (taken < k && pos_ < size_) {
    store_value(*t_, pos_++, v[taken++]);
  }
  return taken;
}

size_t WindowFiller::push_pcm16(const int16_t* s, size_t k) {
  size_t taken = 0;
  while (taken < k && pos_ < size_) {
    store_pcm16(*t_, pos_++, s[taken++]);
  }
  return taken;
}

// ---------------------------------------------------------------------------

size_t SampleRing::write(const int16_t* s, size_t n) {
  size_t head = head_;
  const size_t tail = tail_;
  size_t written = 0;
  for (; written < n; ++written) {
    const size_t next = (head + 1) % cap_;
    if (next == tail) break;  // full: one slot stays empty
    buf_[head] = s[written];
    head = next;
  }
  head_ = head;
  if (written < n) dropped_ = dropped_ + static_cast<uint32_t>(n - written);
  return written;
}

size_t SampleRing::read(int16_t* out, size_t n) {
  size_t tail = tail_;
  const size_t head = head_;
  size_t got = 0;
  while (got < n && tail != head) {
    out[got++] = buf_[tail];
    tail = (tail + 1) % cap_;
  }
  tail_ = tail;
  return got;
}

size_t SampleRing::available() const {
  const size_t head = head_;
  const size_t tail = tail_;
  return head >= tail ? head - tail : cap_ - tail + head;
}

// ---------------------------------------------------------------------------

uint32_t OpEventLog::begin(const char* tag, uint32_t cycles, uint32_t micros) {
  if (n_ >= cap_) {
    ++dropped_;
    return 0xFFFFFFFFu;
  }
  ev_[n_].tag = tag;
  ev_[n_].cycles = cycles;
  ev_[n_].micros = micros;
  return static_cast<uint32_t>(n_++);
}

void OpEventLog::end(uint32_t handle, uint32_t cycles, uint32_t micros) {
  if (handle >= n_) return;
  // Unsigned subtraction: right across one counter wrap.
  ev_[handle].cycles = cycles - ev_[handle].cycles;
  ev_[handle].micros = micros - ev_[handle].micros;
}

// ---------------------------------------------------------------------------

uint32_t bisect_min_size(uint32_t lo, uint32_t hi, uint32_t step, SizeProbe probe, void* ctx) {
  if (step == 0) step = 1;
  lo = (lo / step) * step;
  hi = ((hi + step - 1) / step) * step;
  // Invariant: probe(hi) holds (assumed); everything below lo fails.
  while (lo < hi) {
    const uint32_t mid = lo + (((hi - lo) / step) / 2) * step;
    if (probe(mid, ctx)) {
      hi = mid;
    } else {
      lo = mid + step;
    }
  }
  return hi;
}

// ---------------------------------------------------------------------------

namespace {

constexpr size_t kMaxListedTensors = 8;
constexpr size_t kTensorTextChars = 48;

void field_tensors(LineWriter& w, const char* key, const TensorInfo* t, size_t n) {
  char text[kMaxListedTensors][kTensorTextChars];
  const char* items[kMaxListedTensors];
  if (n > kMaxListedTensors) n = kMaxListedTensors;
  for (size_t i = 0; i < n; ++i) {
    if (!format_tensor(t[i], text[i], kTensorTextChars)) {
      text[i][0] = '?';
      text[i][1] = '\0';
    }
    items[i] = text[i];
  }
  w.field_list(key, items, n);
}

}  // namespace

size_t write_hello(LineWriter& w, const DeviceInfo& d, bool layers) {
  w.begin("hello");
  w.field_uint("proto", static_cast<uint32_t>(kProtocolVersion));
  w.field("fw", d.firmware);
  w.field("model", d.model_sha);
  w.field("board", d.board);
  w.field("runtime", d.runtime);
  w.field_uint("arena", d.arena);
  w.field_uint("used", d.used);
  w.field_list("ops", d.ops, d.n_ops);
  field_tensors(w, "in", d.inputs, d.n_inputs);
  field_tensors(w, "out", d.outputs, d.n_outputs);
  w.field("input", d.input_source);
  w.field_uint("sim", 0);
  if (layers) w.field_uint("layers", 1);
  return w.finish();
}

size_t write_result(LineWriter& w, uint32_t seq, uint32_t us, const TensorInfo* outputs,
                    size_t n_outputs, float* values, int32_t* raw, size_t capacity,
                    int64_t frame, const StreamFields* stream) {
  size_t n = 0;
  bool all_quantized = n_outputs > 0;
  for (size_t k = 0; k < n_outputs; ++k) {
    if (!is_quantized_int(outputs[k])) all_quantized = false;
    const size_t count = element_count(outputs[k]);
    for (size_t i = 0; i < count && n < capacity; ++i, ++n) {
      values[n] = load_value(outputs[k], i);
      if (raw) raw[n] = load_raw(outputs[k], i);
    }
  }
  w.begin("res");
  w.field_uint("seq", seq);
  w.field_uint("us", us);
  w.field_floats("out", values, n);
  w.field_int("top", n_outputs ? static_cast<int32_t>(argmax(outputs[0])) : -1);
  if (all_quantized && raw) w.field_ints("q", raw, n);
  if (frame >= 0) w.field_uint("frame", static_cast<uint32_t>(frame));
  if (stream) field_stream_timing(w, stream->t_ms, stream->feature_us, stream->dropped);
  return w.finish();
}

size_t write_error(LineWriter& w, const char* code, const char* msg) {
  w.begin("err");
  w.field("code", code);
  w.field("msg", msg);
  return w.finish();
}

size_t write_ack(LineWriter& w, uint32_t seq, bool ok, const char* why) {
  w.begin("ack");
  w.field_uint("seq", seq);
  w.field_uint("ok", ok ? 1u : 0u);
  if (!ok && why && *why) w.field("why", why);
  return w.finish();
}

size_t write_op(LineWriter& w, uint32_t seq, uint32_t index, const char* op, uint32_t cycles,
                uint32_t micros) {
  w.begin("op");
  w.field_uint("seq", seq);
  w.field_uint("i", index);
  w.field("op", op ? op : "?");
  w.field_uint("cyc", cycles);
  w.field_uint("us", micros);
  return w.finish();
}

size_t write_arena(LineWriter& w, uint32_t min_bytes, uint32_t used_bytes) {
  w.begin("arena");
  w.field_uint("min", min_bytes);
  w.field_uint("used", used_bytes);
  return w.finish();
}

}  // namespace nanoml
