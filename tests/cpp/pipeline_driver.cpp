// Host driver of the firmware's own pipeline code (sketches/firmware/nanoml_window.h,
// nanoml_recognizer.h, nanoml_app.cpp), built with the host g++ by
// tests/test_firmware_pipeline.py and fed the same frames/samples/scores as the
// Python twins. Commands on stdin, one result per line on stdout:
//
//   audio TYPE MULT SHIFT ZP QMIN QMAX FSCALE FRAMES CHANNELS STRIDE STEP SIZE RATE N
//         then N*CHANNELS uint16 values (front-end frames, oldest first)
//     -> "W t_ms v0 v1 ..." per window (float32 tensors: the values' bit patterns)
//   imu TYPE SCALE ZP SAMPLES CHANNELS STRIDE RATE HAS_OFFSET HAS_SCALE [OFFSETS] [SCALES] N
//         then N*CHANNELS floats (hex floats: exact)
//     -> "W t_ms v0 v1 ..." per window
//   rec AVG_MS THRESHOLD SUPPRESSION_MS MIN_COUNT LABELS IGNORE... N
//         then N lines "t_ms s0 .. s(LABELS-1)"
//     -> "D t_ms index score" per detection
//   score TYPE SCALE ZP N then N values (raw integers, or hex floats for float32)
//     -> "S s0 s1 ..."
//   lines -> a res line with the stream fields and a det line (the firmware's encoders)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "nanoml_app.h"
#include "nanoml_recognizer.h"
#include "nanoml_window.h"

using namespace nanoml;

static void print_tensor(const uint8_t* data, int type, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    switch (type) {
      case kTypeFloat32: {
        uint32_t bits;
        memcpy(&bits, data + 4 * i, 4);
        printf(" %u", bits);
        break;
      }
      case kTypeInt8: printf(" %d", static_cast<int>(static_cast<int8_t>(data[i]))); break;
      case kTypeUInt8: printf(" %u", static_cast<unsigned>(data[i])); break;
      case kTypeInt16: {
        int16_t v;
        memcpy(&v, data + 2 * i, 2);
        printf(" %d", static_cast<int>(v));
        break;
      }
      default: break;
    }
  }
  printf("\n");
}

static int run_audio() {
  FeatureConversion c;
  unsigned frames, channels, stride, step, size, rate, n;
  if (scanf("%d %d %d %d %d %d %f %u %u %u %u %u %u %u", &c.type, &c.multiplier, &c.shift,
            &c.zero_point, &c.qmin, &c.qmax, &c.feature_scale, &frames, &channels, &stride,
            &step, &size, &rate, &n) != 14) {
    return 2;
  }
  std::vector<uint16_t> ring(frames * channels), frame(channels);
  std::vector<uint8_t> tensor(frames * channels * type_size(c.type));
  FrameWindow w(ring.data(), frames, channels, stride);
  for (unsigned k = 0; k < n; ++k) {
    for (unsigned i = 0; i < channels; ++i) {
      unsigned v;
      if (scanf("%u", &v) != 1) return 2;
      frame[i] = static_cast<uint16_t>(v);
    }
    if (w.push(frame.data())) {
      w.to_tensor(c, tensor.data());
      printf("W %u", frame_end_ms(w.frames_done() - 1, step, size, rate));
      print_tensor(tensor.data(), c.type, frames * channels);
    }
  }
  return 0;
}

static int run_imu() {
  int type, zp, has_offset, has_scale;
  float scale;
  unsigned samples, channels, stride, rate, n;
  if (scanf("%d %f %d %u %u %u %u %d %d", &type, &scale, &zp, &samples, &channels, &stride,
            &rate, &has_offset, &has_scale) != 9) {
    return 2;
  }
  std::vector<float> offsets(channels), scales(channels);
  for (unsigned i = 0; has_offset && i < channels; ++i) {
    if (scanf("%f", &offsets[i]) != 1) return 2;
  }
  for (unsigned i = 0; has_scale && i < channels; ++i) {
    if (scanf("%f", &scales[i]) != 1) return 2;
  }
  if (scanf("%u", &n) != 1) return 2;
  std::vector<float> ring(samples * channels), sample(channels);
  std::vector<uint8_t> data(samples * channels * type_size(type));
  int dims[3] = {1, static_cast<int>(samples), static_cast<int>(channels)};
  TensorInfo t = {type, dims, 3, scale, zp, data.data(), data.size()};
  SampleWindow w(ring.data(), samples, channels, stride, has_offset ? offsets.data() : nullptr,
                 has_scale ? scales.data() : nullptr);
  for (unsigned k = 0; k < n; ++k) {
    for (unsigned i = 0; i < channels; ++i) {
      if (scanf("%f", &sample[i]) != 1) return 2;
    }
    if (w.push(sample.data())) {
      w.to_tensor(t);
      printf("W %u", static_cast<unsigned>(static_cast<uint64_t>(w.samples_done()) * 1000u / rate));
      print_tensor(data.data(), type, samples * channels);
    }
  }
  return 0;
}

static int run_recognizer() {
  DecisionConfig cfg;
  unsigned labels, n;
  if (scanf("%d %d %d %d %u", &cfg.average_window_ms, &cfg.threshold, &cfg.suppression_ms,
            &cfg.minimum_count, &labels) != 5) {
    return 2;
  }
  std::vector<uint8_t> ignore(labels), scores(labels);
  for (unsigned i = 0; i < labels; ++i) {
    unsigned v;
    if (scanf("%u", &v) != 1) return 2;
    ignore[i] = static_cast<uint8_t>(v);
  }
  cfg.ignore = ignore.data();
  if (scanf("%u", &n) != 1) return 2;
  std::vector<int64_t> times(kRecognizerMaxResults);
  std::vector<uint8_t> store(kRecognizerMaxResults * labels);
  Recognizer rec(cfg, labels, times.data(), store.data());
  for (unsigned k = 0; k < n; ++k) {
    long long t;
    if (scanf("%lld", &t) != 1) return 2;
    for (unsigned i = 0; i < labels; ++i) {
      unsigned v;
      if (scanf("%u", &v) != 1) return 2;
      scores[i] = static_cast<uint8_t>(v);
    }
    Detection d;
    if (rec.process(scores.data(), t, &d)) {
      printf("D %lld %u %u\n", static_cast<long long>(d.t_ms), d.index, d.score);
    }
  }
  return 0;
}

static int run_score() {
  int type, zp;
  float scale;
  unsigned n;
  if (scanf("%d %f %d %u", &type, &scale, &zp, &n) != 4) return 2;
  std::vector<uint8_t> data(n * type_size(type));
  int dims[2] = {1, static_cast<int>(n)};
  TensorInfo t = {type, dims, 2, scale, zp, data.data(), data.size()};
  for (unsigned i = 0; i < n; ++i) {
    if (type == kTypeFloat32) {
      float v;
      if (scanf("%f", &v) != 1) return 2;
      memcpy(data.data() + 4 * i, &v, 4);
    } else {
      long v;
      if (scanf("%ld", &v) != 1) return 2;
      if (type == kTypeInt8) {
        const int8_t q = static_cast<int8_t>(v);
        memcpy(data.data() + i, &q, 1);
      } else if (type == kTypeUInt8) {
        data[i] = static_cast<uint8_t>(v);
      } else if (type == kTypeInt16) {
        const int16_t q = static_cast<int16_t>(v);
        memcpy(data.data() + 2 * i, &q, 2);
      }
    }
  }
  std::vector<uint8_t> out(n);
  score_u8(t, out.data(), n);
  printf("S");
  for (unsigned i = 0; i < n; ++i) printf(" %u", out[i]);
  printf("\n");
  return 0;
}

static int run_lines() {
  static char buf[512];
  int8_t out[4] = {-128, -100, 90, -60};
  int dims[2] = {1, 4};
  TensorInfo t = {kTypeInt8, dims, 2, 1.0f / 256, -128, reinterpret_cast<uint8_t*>(out), 4};
  float values[4];
  int32_t raw[4];
  StreamFields s = {2190, 1840, 7};
  LineWriter w(buf, sizeof(buf));
  size_t n = write_result(w, 12, 1431, &t, 1, values, raw, 4, -1, &s);
  fwrite(w.data(), 1, n, stdout);
  n = encode_det(w, 12, 2, "yes", 218, 2190);
  fwrite(w.data(), 1, n, stdout);
  return 0;
}

int main() {
  char cmd[16];
  while (scanf("%15s", cmd) == 1) {
    int rc = 2;
    if (!strcmp(cmd, "audio")) rc = run_audio();
    else if (!strcmp(cmd, "imu")) rc = run_imu();
    else if (!strcmp(cmd, "rec")) rc = run_recognizer();
    else if (!strcmp(cmd, "score")) rc = run_score();
    else if (!strcmp(cmd, "lines")) rc = run_lines();
    if (rc) return rc;
    fflush(stdout);
  }
  return 0;
}
