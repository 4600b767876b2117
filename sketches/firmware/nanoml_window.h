// nanoml firmware: sensor pipelines' windows and the feature-to-tensor
// conversion (docs/pipeline.md "Streaming"). Needs neither Arduino nor TFLM:
// nanoml's tests compile it for the Cortex-M4 and for the host, and check it
// against the Python twins (nanoml/pipeline/stream.py, imu.py, frontend.py's
// to_tensor) on the same samples.
//
// Copied verbatim into every generated project by `nanoml build`.
#ifndef NANOML_WINDOW_H_
#define NANOML_WINDOW_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nanoml_app.h"

namespace nanoml {

// Feature-to-tensor conversion of one front-end value v (uint16), the
// pipeline's integer formula (nanoml/pipeline/spec.py):
//   q = clamp(zero_point + ((v * multiplier + (1 << (shift - 1))) >> shift), qmin, qmax)
// float32 tensors take v * feature_scale in float32.
struct FeatureConversion {
  int type;              // TensorType of the model's input
  int32_t multiplier;
  int32_t shift;         // 1..31
  int32_t zero_point;
  int32_t qmin;
  int32_t qmax;
  float feature_scale;
};

inline int32_t convert_feature(uint16_t v, const FeatureConversion& c) {
  const int64_t p = static_cast<int64_t>(v) * c.multiplier + (static_cast<int64_t>(1) << (c.shift - 1));
  const int64_t q = static_cast<int64_t>(c.zero_point) + (p >> c.shift);
  return q < c.qmin ? c.qmin : (q > c.qmax ? c.qmax : static_cast<int32_t>(q));
}

// Stores `n` front-end values as elements [first, first + n) of the tensor.
inline void store_features(const uint16_t* v, size_t n, const FeatureConversion& c,
                           uint8_t* data, size_t first) {
  for (size_t i = 0; i < n; ++i) {
    const size_t k = first + i;
    switch (c.type) {
      case kTypeFloat32: {
        const float x = static_cast<float>(v[i]) * c.feature_scale;
        memcpy(data + 4 * k, &x, 4);
        break;
      }
      case kTypeInt8: {
        const int8_t q = static_cast<int8_t>(convert_feature(v[i], c));
        memcpy(data + k, &q, 1);
        break;
      }
      case kTypeUInt8:
        data[k] = static_cast<uint8_t>(convert_feature(v[i], c));
        break;
      case kTypeInt16: {
        const int16_t q = static_cast<int16_t>(convert_feature(v[i], c));
        memcpy(data + 2 * k, &q, 2);
        break;
      }
      default:
        break;
    }
  }
}

// The sliding window of an audio pipeline: a ring of the latest `frames`
// front-end frames (uint16, `channels` each). Frame k (0-based, counted from
// the start) closes a window when k + 1 >= frames and
// (k + 1 - frames) % stride == 0: the first window once `frames` frames exist,
// then one every `stride` frames (nanoml/pipeline/stream.py, the same rule).
class FrameWindow {
 public:
  FrameWindow(uint16_t* storage, size_t frames, size_t channels, size_t stride)
      : buf_(storage), frames_(frames), channels_(channels), stride_(stride ? stride : 1),
        done_(0) {}
  // Adds one frame; true when a window closes with it (an inference is due).
  bool push(const uint16_t* frame) {
    memcpy(buf_ + (done_ % frames_) * channels_, frame, channels_ * sizeof(uint16_t));
    ++done_;
    return done_ >= frames_ && (done_ - frames_) % stride_ == 0;
  }
  // Frame i of the window, 0 = the oldest.
  const uint16_t* frame(size_t i) const {
    return buf_ + ((done_ + i) % frames_) * channels_;
  }
  // The window, oldest frame first, converted into the tensor's data.
  void to_tensor(const FeatureConversion& c, uint8_t* data) const {
    for (size_t i = 0; i < frames_; ++i) store_features(frame(i), channels_, c, data, i * channels_);
  }
  uint32_t frames_done() const { return done_; }
  size_t frames() const { return frames_; }
  size_t channels() const { return channels_; }
  void reset() { done_ = 0; }

 private:
  uint16_t* buf_;
  size_t frames_;
  size_t channels_;
  size_t stride_;
  uint32_t done_;
};

// Stream time (ms) at the end of front-end frame k: (k*step + size) * 1000 / rate.
inline uint32_t frame_end_ms(uint32_t k, uint32_t step, uint32_t size, uint32_t rate) {
  return static_cast<uint32_t>((static_cast<uint64_t>(k) * step + size) * 1000u / rate);
}

// The overlapping windows of an IMU pipeline: a ring of the latest `samples`
// samples (float, `channels` each, normalised as they arrive:
// x' = (x - offset[c]) / scale[c] in float32). Sample n (1-based count)
// closes a window when n >= samples and (n - samples) % stride == 0: window i
// holds samples [i*stride, i*stride + samples) (nanoml/pipeline/imu.py).
class SampleWindow {
 public:
  SampleWindow(float* storage, size_t samples, size_t channels, size_t stride,
               const float* offset, const float* scale)
      : buf_(storage), samples_(samples), channels_(channels), stride_(stride ? stride : 1),
        offset_(offset), scale_(scale), done_(0) {}
  // Adds one sample of `channels` values; true when a window closes with it.
  bool push(const float* v) {
    float* dst = buf_ + (done_ % samples_) * channels_;
    for (size_t c = 0; c < channels_; ++c) {
      float x = v[c];
      if (offset_) x = x - offset_[c];
      if (scale_) x = x / scale_[c];
      dst[c] = x;
    }
    ++done_;
    return done_ >= samples_ && (done_ - samples_) % stride_ == 0;
  }
  const float* sample(size_t i) const { return buf_ + ((done_ + i) % samples_) * channels_; }
  // The window, oldest sample first, stored into the tensor (store_value:
  // float32 as is, integer types quantized with the tensor's scale).
  void to_tensor(TensorInfo& t) const {
    for (size_t i = 0; i < samples_; ++i) {
      const float* s = sample(i);
      for (size_t c = 0; c < channels_; ++c) store_value(t, i * channels_ + c, s[c]);
    }
  }
  uint32_t samples_done() const { return done_; }
  void reset() { done_ = 0; }

 private:
  float* buf_;
  size_t samples_;
  size_t channels_;
  size_t stride_;
  const float* offset_;
  const float* scale_;
  uint32_t done_;
};

}  // namespace nanoml

#endif  // NANOML_WINDOW_H_
