// Layer-dump firmware (`nanoml build --layers`): the protocol side of a layer
// dump, with no TensorFlow Lite Micro type in it (nanoml's tests build it on
// the host against the Python decoder, and for the Cortex-M4).
//
// For an input frame the firmware runs Invoke(); right after each operator of
// subgraph 0 ran, it sends that operator's outputs (docs/protocol.md "Layer
// dumps"), one per output tensor:
//
//   ~nm lay frame=<seq> i=<op> o=<output> op=<name> t=<tensor> dtype=<type>
//       shape=<d0,d1,..> bytes=<n> chunks=<ceil(n/90)> crc=<CRC-32> [scale= zp=]
//   ~nm lch frame=<seq> i=<op> o=<output> k=<chunk> hex=<<= 90 bytes>    (x chunks)
//
// and after Invoke() one `lend`. Every line fits in kMaxLineLength (256) bytes,
// so the firmware's line buffer is all the RAM a dump needs: the tensor is
// read where it lives in the arena, chunk by chunk.
//
// LayerTracker follows the profiler's BeginEvent/EndEvent nesting: an event
// at depth 0 is an operator of subgraph 0 (the k-th one of this Invoke());
// deeper events are operators inside a control-flow subgraph (WHILE, IF),
// counted but not dumped.
//
// Copied into a generated project by `nanoml build --layers`.
#ifndef NANOML_LAYERS_H_
#define NANOML_LAYERS_H_

#include <stddef.h>
#include <stdint.h>

#include "nanoml_protocol.h"

namespace nanoml {

// Tensor bytes per `lch` line (LAYER_CHUNK_BYTES in nanoml/serial/protocol.py).
constexpr size_t kLayerChunkBytes = 90;
// Dimensions a `lay` shape carries (MAX_DIMS in protocol.py).
constexpr int kMaxLayerDims = 8;

// CRC-32 (zlib / IEEE 802.3: reflected polynomial 0xEDB88320, init and final
// xor 0xFFFFFFFF) with a 16-entry table (64 bytes of flash).
// crc32("123456789") == 0xCBF43926. To continue over several buffers pass the
// previous result as `crc`.
inline uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0) {
  static const uint32_t kNibble[16] = {
      0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
      0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
      0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) {
    crc ^= data[i];
    crc = (crc >> 4) ^ kNibble[crc & 0xFu];
    crc = (crc >> 4) ^ kNibble[crc & 0xFu];
  }
  return ~crc;
}

// One operator output, as the dump describes it. `why` non-null: not sent
// (the `lay` line carries it, bytes=0, no chunks): "dtype" or "nodata".
struct LayerTensor {
  uint32_t op;             // operator index in subgraph 0
  uint32_t output;         // position among the operator's outputs
  const char* name;        // operator name
  int32_t tensor;          // tensor index in subgraph 0
  const char* dtype;       // numpy name: int8, float32, ...
  const int* dims;
  int ndims;
  bool quantized;          // per-tensor scale and zero point present
  float scale;
  int32_t zero_point;
  const uint8_t* data;
  size_t bytes;
  const char* why;
};

// Where the lines go (Serial.write on the board; a buffer in the tests).
typedef void (*LineSink)(const char* line, size_t len, void* ctx);

inline uint32_t layer_chunks(size_t bytes) {
  return static_cast<uint32_t>((bytes + kLayerChunkBytes - 1) / kLayerChunkBytes);
}

// Sends the `lay` header and the `lch` chunks of one output. Returns the
// number of lines sent, 0 when a line did not fit in the writer's buffer
// (then nothing more is sent for it: the host sees the dump incomplete and
// sends the frame again or reports it).
inline size_t write_layer(LineWriter& w, uint32_t frame, const LayerTensor& t, LineSink sink,
                          void* ctx) {
  const bool send_data = t.why == nullptr && t.data != nullptr;
  const size_t bytes = send_data ? t.bytes : 0;
  const uint32_t chunks = layer_chunks(bytes);
  int32_t dims[kMaxLayerDims];
  const int nd = t.ndims < 0 ? 0 : (t.ndims > kMaxLayerDims ? kMaxLayerDims : t.ndims);
  for (int i = 0; i < nd; ++i) dims[i] = t.dims[i];
  w.begin("lay");
  w.field_uint("frame", frame);
  w.field_uint("i", t.op);
  w.field_uint("o", t.output);
  w.field("op", t.name);
  w.field_int("t", t.tensor);
  w.field("dtype", t.dtype);
  w.field_ints("shape", dims, static_cast<size_t>(nd));
  w.field_uint("bytes", static_cast<uint32_t>(bytes));
  w.field_uint("chunks", chunks);
  w.field_uint("crc", send_data ? crc32(t.data, bytes) : 0u);
  if (send_data && t.quantized) {
    w.field_float("scale", t.scale);
    w.field_int("zp", t.zero_point);
  }
  if (!send_data) w.field("why", t.why ? t.why : "nodata");
  size_t len = w.finish();
  if (len == 0) return 0;
  sink(w.data(), len, ctx);
  size_t lines = 1;
  for (uint32_t k = 0; k < chunks; ++k) {
    const size_t off = static_cast<size_t>(k) * kLayerChunkBytes;
    const size_t n = bytes - off < kLayerChunkBytes ? bytes - off : kLayerChunkBytes;
    w.begin("lch");
    w.field_uint("frame", frame);
    w.field_uint("i", t.op);
    w.field_uint("o", t.output);
    w.field_uint("k", k);
    w.field_hex("hex", t.data + off, n);
    len = w.finish();
    if (len == 0) return 0;
    sink(w.data(), len, ctx);
    ++lines;
  }
  return lines;
}

// The `lend` trailer: `ops` operators of subgraph 0 ran, `sent` headers were
// sent, `nested` operator runs happened inside control-flow subgraphs.
inline size_t write_layer_end(LineWriter& w, uint32_t frame, uint32_t ops, uint32_t sent,
                              uint32_t nested) {
  w.begin("lend");
  w.field_uint("frame", frame);
  w.field_uint("ops", ops);
  w.field_uint("sent", sent);
  w.field_uint("nested", nested);
  return w.finish();
}

// Operator events of one Invoke(), from the profiler hook. begin() returns
// the handle end() gets back; end() returns the index of the subgraph-0
// operator that just finished, or -1 for an operator of a nested subgraph.
class LayerTracker {
 public:
  LayerTracker() { start(0); }
  void start(uint32_t frame) {
    frame_ = frame;
    depth_ = 0;
    ops_ = 0;
    nested_ = 0;
    sent_ = 0;
  }
  uint32_t begin() { return depth_++; }
  int32_t end(uint32_t handle) {
    if (depth_ > 0) --depth_;
    if (handle != 0) {
      ++nested_;
      return -1;
    }
    return static_cast<int32_t>(ops_++);
  }
  void count_sent() { ++sent_; }
  uint32_t frame() const { return frame_; }
  uint32_t ops() const { return ops_; }
  uint32_t nested() const { return nested_; }
  uint32_t sent() const { return sent_; }

 private:
  uint32_t frame_;
  uint32_t depth_;
  uint32_t ops_;
  uint32_t nested_;
  uint32_t sent_;
};

}  // namespace nanoml

#endif  // NANOML_LAYERS_H_
