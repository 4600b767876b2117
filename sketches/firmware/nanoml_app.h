// nanoml firmware: the parts that need neither Arduino nor TensorFlow Lite
// Micro (tensor views, quantization, sample windows, protocol lines, arena
// bisection, per-operator event log). nanoml's tests compile this file for
// the Cortex-M4 and for the host, and run it on the host.
//
// Copied verbatim into every generated project by `nanoml build`.
#ifndef NANOML_APP_H_
#define NANOML_APP_H_

#include <stddef.h>
#include <stdint.h>

#include "nanoml_protocol.h"

namespace nanoml {

// Tensor element types, numbered as TfLiteType
// (tensorflow/lite/core/c/c_api_types.h), so `TfLiteTensor::type` can be
// stored as is.
enum TensorType : int {
  kTypeNone = 0,
  kTypeFloat32 = 1,
  kTypeInt32 = 2,
  kTypeUInt8 = 3,
  kTypeInt64 = 4,
  kTypeBool = 6,
  kTypeInt16 = 7,
  kTypeInt8 = 9,
  kTypeFloat16 = 10,
};

// A tensor as the firmware sees it: no TFLM type involved. `scale == 0`
// means "not quantized" (values are stored as they are).
struct TensorInfo {
  int type;
  const int* dims;
  int ndims;
  float scale;
  int32_t zero_point;
  uint8_t* data;
  size_t bytes;
};

size_t type_size(int type);          // bytes per element, 0 if unknown
const char* type_name(int type);     // "int8", "float32", ... ("unknown")
int schema_type_code(int type);      // TfLiteType -> TFLite schema TensorType (synthetic_fill)
size_t element_count(const TensorInfo& t);
// The channel dimension of a sensor window: the last dimension above 1
// ([1, 64, 3, 1] -> 3, [1, 50, 6] -> 6); 1 when there is none.
int channel_dim(const TensorInfo& t);

// Writes "<dtype>:<d0>x<d1>..." (protocol `tensors` item) into out; returns
// its length (0 if it did not fit in cap, which includes the NUL).
size_t format_tensor(const TensorInfo& t, char* out, size_t cap);

// Quantizes x with the tensor's scale and zero point (round half away from
// zero, saturate to the element type) and stores it as element i. Float
// tensors store x; unquantized integer tensors store x rounded and saturated.
void store_value(TensorInfo& t, size_t i, float x);
// One 16-bit PCM sample: int16 tensors without a scale take it raw, every
// other tensor takes s / 32768 (a value in [-1, 1)) through store_value.
void store_pcm16(TensorInfo& t, size_t i, int16_t s);
// Element i as a real value (dequantized when the tensor has a scale).
float load_value(const TensorInfo& t, size_t i);
// Element i as stored (integers; float tensors are truncated).
int32_t load_raw(const TensorInfo& t, size_t i);
bool is_quantized_int(const TensorInfo& t);   // int8/uint8/int16/int32 with a scale
size_t argmax(const TensorInfo& t);

// Fills a tensor with consecutive samples, window after window (hop = window:
// the windows do not overlap). The samples are quantized straight into the
// tensor, so no second buffer is needed.
class WindowFiller {
 public:
  WindowFiller() : t_(nullptr), size_(0), pos_(0) {}
  void attach(TensorInfo* t);
  // Stores up to k values; returns how many it took (fewer once the window is
  // full: call restart() after the inference).
  size_t push(const float* v, size_t k);
  size_t push_pcm16(const int16_t* s, size_t k);
  bool full() const { return size_ != 0 && pos_ >= size_; }
  void restart() { pos_ = 0; }
  size_t position() const { return pos_; }
  size_t size() const { return size_; }

 private:
  TensorInfo* t_;
  size_t size_;
  size_t pos_;
};

// Single-producer (interrupt) single-consumer (loop) ring of 16-bit samples.
// Samples that do not fit are dropped and counted.
class SampleRing {
 public:
  SampleRing(int16_t* storage, size_t capacity)
      : buf_(storage), cap_(capacity), head_(0), tail_(0), dropped_(0) {}
  size_t write(const int16_t* s, size_t n);   // producer side
  size_t read(int16_t* out, size_t n);        // consumer side
  size_t available() const;
  uint32_t dropped() const { return dropped_; }

 private:
  int16_t* buf_;
  size_t cap_;
  volatile size_t head_;   // next write position (producer)
  volatile size_t tail_;   // next read position (consumer)
  volatile uint32_t dropped_;
};

// Per-operator timing records of one Invoke() (profiling firmware). begin()
// returns a handle for end(); events past the capacity are counted, not kept.
struct OpEvent {
  const char* tag;
  uint32_t cycles;   // start value until end(), then the duration
  uint32_t micros;   // likewise
};

class OpEventLog {
 public:
  OpEventLog(OpEvent* storage, size_t capacity)
      : ev_(storage), cap_(capacity), n_(0), dropped_(0) {}
  void clear() { n_ = 0; dropped_ = 0; }
  uint32_t begin(const char* tag, uint32_t cycles, uint32_t micros);
  void end(uint32_t handle, uint32_t cycles, uint32_t micros);
  size_t count() const { return n_; }
  uint32_t dropped() const { return dropped_; }
  const OpEvent& at(size_t i) const { return ev_[i]; }

 private:
  OpEvent* ev_;
  size_t cap_;
  size_t n_;
  uint32_t dropped_;
};

// Smallest multiple of `step` in [lo, hi] for which probe(size) succeeds,
// assuming probe is monotone and probe(hi) succeeds (not checked: the caller
// knows). Probes O(log((hi - lo) / step)) sizes. The profiling firmware uses
// it for the arena (nanoml_arena_probe.h makes each probe fail cleanly).
typedef bool (*SizeProbe)(uint32_t size, void* ctx);
uint32_t bisect_min_size(uint32_t lo, uint32_t hi, uint32_t step, SizeProbe probe, void* ctx);

// What the hello line says about the running firmware.
struct DeviceInfo {
  const char* firmware;
  const char* model_sha;     // 12 hex digits
  const char* board;
  const char* runtime;
  const char* input_source;  // serial | synthetic | imu | mic
  uint32_t arena;
  uint32_t used;
  const char* const* ops;    // operator names in execution order
  size_t n_ops;
  const TensorInfo* inputs;
  size_t n_inputs;
  const TensorInfo* outputs;
  size_t n_outputs;
};

// A sensor pipeline's real-time accounting for one result (res fields t_ms,
// fus, drop: nanoml_protocol.h field_stream_timing).
struct StreamFields {
  uint32_t t_ms;         // stream time of the window's last sample
  uint32_t feature_us;   // front end + window conversion since the previous result
  uint32_t dropped;      // samples lost since boot
};

// Protocol lines (docs/protocol.md). Each returns the line length, 0 when it
// did not fit in the writer's buffer (then nothing must be sent).
// `layers`: the layer-dump build (hello `layers=1`).
size_t write_hello(LineWriter& w, const DeviceInfo& d, bool layers = false);
// `values`/`raw` are scratch arrays of `capacity` elements (all outputs,
// concatenated). `frame` is the host frame answered, or -1 for none;
// `stream` the pipeline's fields, or nullptr.
size_t write_result(LineWriter& w, uint32_t seq, uint32_t us, const TensorInfo* outputs,
                    size_t n_outputs, float* values, int32_t* raw, size_t capacity,
                    int64_t frame, const StreamFields* stream = nullptr);
size_t write_error(LineWriter& w, const char* code, const char* msg);
size_t write_ack(LineWriter& w, uint32_t seq, bool ok, const char* why);
size_t write_op(LineWriter& w, uint32_t seq, uint32_t index, const char* op, uint32_t cycles,
                uint32_t micros);
size_t write_arena(LineWriter& w, uint32_t min_bytes, uint32_t used_bytes);

}  // namespace nanoml

#endif  // NANOML_APP_H_
