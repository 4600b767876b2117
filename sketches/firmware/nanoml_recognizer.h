// nanoml firmware: scores -> decisions, TFLM micro_speech's RecognizeCommands
// in integer arithmetic. The C++ twin of nanoml/pipeline/recognizer.py (its
// module doc is the definition; nanoml's tests feed both the same scores and
// compare the detections). Needs neither Arduino nor TFLM.
//
// Copied verbatim into every generated project by `nanoml build`.
#ifndef NANOML_RECOGNIZER_H_
#define NANOML_RECOGNIZER_H_

#include <stddef.h>
#include <stdint.h>

#include "nanoml_app.h"

namespace nanoml {

constexpr size_t kRecognizerMaxResults = 50;   // TFLM's kMaxResults

struct DecisionConfig {
  int32_t average_window_ms;
  int32_t threshold;          // 0..255
  int32_t suppression_ms;
  int32_t minimum_count;
  const uint8_t* ignore;      // per label: 1 = decided but not reported (silence, unknown)
};

struct Detection {
  uint32_t index;
  uint32_t score;             // the label's average score, 0..255
  int64_t t_ms;
};

// A result's uint8 scores (recognizer.py's score_u8): int8 outputs q + 128,
// uint8 outputs q, other types clamp(floor(p * 256), 0, 255) of the
// (dequantized) value in float32.
inline void score_u8(const TensorInfo& t, uint8_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    int32_t s;
    if (t.type == kTypeInt8 && t.scale != 0.0f) {
      s = load_raw(t, i) + 128;
    } else if (t.type == kTypeUInt8 && t.scale != 0.0f) {
      s = load_raw(t, i);
    } else {
      const float p = load_value(t, i) * 256.0f;
      // floor, without libm; saturated first so the cast is defined.
      if (!(p > 0.0f)) {
        s = 0;
      } else if (p >= 255.0f) {
        s = 255;
      } else {
        s = static_cast<int32_t>(p);   // p in (0, 255): truncation is floor
      }
    }
    out[i] = static_cast<uint8_t>(s < 0 ? 0 : (s > 255 ? 255 : s));
  }
}

// The recognizer over `labels` scores per result. Storage: `times` holds
// kRecognizerMaxResults stream times, `scores` kRecognizerMaxResults * labels
// bytes.
class Recognizer {
 public:
  Recognizer(const DecisionConfig& cfg, size_t labels, int64_t* times, uint8_t* scores)
      : cfg_(cfg), n_(labels), times_(times), scores_(scores) {
    reset();
  }
  void reset() {
    head_ = 0;
    count_ = 0;
    prev_index_ = 0;
    have_prev_ = false;
    prev_time_ = 0;
  }
  // One result's scores at stream time t_ms (non-decreasing). True when it
  // makes a detection to report (then *out is set).
  bool process(const uint8_t* s, int64_t t_ms, Detection* out) {
    if (count_ >= kRecognizerMaxResults) pop();
    const size_t slot = (head_ + count_) % kRecognizerMaxResults;
    times_[slot] = t_ms;
    for (size_t i = 0; i < n_; ++i) scores_[slot * n_ + i] = s[i];
    ++count_;
    const int64_t limit = t_ms - cfg_.average_window_ms;
    while (count_ > 0 && times_[head_] < limit) pop();
    if (count_ < static_cast<size_t>(cfg_.minimum_count) ||
        t_ms - times_[head_] < cfg_.average_window_ms / 4) {
      return false;
    }
    uint32_t top = 0;
    uint32_t top_score = 0;
    for (size_t i = 0; i < n_; ++i) {
      uint32_t total = 0;
      for (size_t k = 0; k < count_; ++k) total += scores_[((head_ + k) % kRecognizerMaxResults) * n_ + i];
      const uint32_t avg = total / static_cast<uint32_t>(count_);
      if (avg > top_score) {
        top = static_cast<uint32_t>(i);
        top_score = avg;
      }
    }
    const int64_t since = (prev_index_ == 0 || !have_prev_) ? static_cast<int64_t>(2147483647)
                                                             : t_ms - prev_time_;
    if (top_score > static_cast<uint32_t>(cfg_.threshold) &&
        (top != prev_index_ || since > cfg_.suppression_ms)) {
      prev_index_ = top;
      prev_time_ = t_ms;
      have_prev_ = true;
      if (cfg_.ignore && cfg_.ignore[top]) return false;
      out->index = top;
      out->score = top_score;
      out->t_ms = t_ms;
      return true;
    }
    return false;
  }

 private:
  void pop() {
    head_ = (head_ + 1) % kRecognizerMaxResults;
    --count_;
  }
  DecisionConfig cfg_;
  size_t n_;
  int64_t* times_;
  uint8_t* scores_;
  size_t head_;
  size_t count_;
  uint32_t prev_index_;
  bool have_prev_;
  int64_t prev_time_;
};

}  // namespace nanoml

#endif  // NANOML_RECOGNIZER_H_
