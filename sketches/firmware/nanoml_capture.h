// nanoml firmware: raw sample capture (docs/protocol.md "Capture"). A take
// is asked for by the host (`cap`), its samples go out as `smp` frames with a
// frame number and the index of their first sample, and it ends with `cend`
// (n samples reached, `stop`, or an error). While a take runs the firmware
// does not run the model. Needs neither Arduino nor TFLM: nanoml's tests
// build it for the host and compare it with the virtual board
// (nanoml/sim/capture.py), and compile it for the Cortex-M4.
//
// Copied verbatim into every generated project by `nanoml build`.
#ifndef NANOML_CAPTURE_H_
#define NANOML_CAPTURE_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nanoml_protocol.h"

namespace nanoml {

// Where the lines go (Serial.write on the board).
typedef void (*LineSink)(const char* line, size_t len, void* ctx);

// What this firmware can capture.
struct CaptureConfig {
  int sensor;            // SensorId the firmware reads (kSensorNone: serial/synthetic)
  uint32_t max_rate;     // mic: its sample rate; imu: the sensor's output data rate
  const char* board;
  const char* rev;
  const char* fw;
  bool windows;          // keeps the raw window behind a detection (dwin on=1 accepted)
};

inline uint32_t capture_spf(int sensor, uint32_t ch) {
  if (sensor == kSensorMic) return static_cast<uint32_t>(kSmpMicBytes / 2u);
  return ch ? static_cast<uint32_t>(kSmpImuBytes / (4u * ch)) : 0u;
}

// The refusal of a `cap` command by a firmware with config `c`, or nullptr.
inline const char* capture_refusal(const CaptureConfig& c, const Command& cmd, bool busy) {
  if (busy) return kCapWhyBusy;
  if (cmd.sensor != c.sensor || c.sensor == kSensorNone) return kCapWhySensor;
  if (c.sensor == kSensorMic) {
    if (cmd.rate != c.max_rate) return kCapWhyRate;
    return cmd.ch == 1u ? nullptr : kCapWhyCh;
  }
  if (cmd.rate == 0u || cmd.rate > c.max_rate) return kCapWhyRate;
  return (cmd.ch == 3u || cmd.ch == 6u || cmd.ch == 9u) ? nullptr : kCapWhyCh;
}

class CaptureSession {
 public:
  CaptureSession(const CaptureConfig& config, char* line, size_t line_cap, LineSink sink,
                 void* ctx)
      : cfg_(config), line_(line), cap_(line_cap), sink_(sink), ctx_(ctx), take_no_(0),
        active_(false), det_windows_(false) {
    clear();
  }

  bool active() const { return active_; }
  bool det_windows() const { return det_windows_; }
  uint32_t rate() const { return rate_; }
  uint32_t channels() const { return ch_; }
  uint32_t take() const { return take_no_; }
  uint32_t samples_done() const { return next_; }

  // Answers one parsed command (cack, and for cap the cst; stop: the cend).
  void command(const Command& cmd) {
    const char* why = nullptr;
    if (cmd.type == kCmdCap) {
      why = capture_refusal(cfg_, cmd, active_);
    } else if (cmd.type == kCmdStop) {
      why = active_ ? nullptr : kCapWhyIdle;
    } else if (cmd.type == kCmdDwin && cmd.on && !cfg_.windows) {
      why = kCapWhyWindow;
    }
    send_cack(cmd.seq, why);
    if (why != nullptr) return;
    if (cmd.type == kCmdCap) {
      begin(cmd.rate, cmd.ch, cmd.n, -1);
    } else if (cmd.type == kCmdStop) {
      finish("stop");
    } else if (cmd.type == kCmdDwin) {
      det_windows_ = cmd.on;
    }
  }

  // A command line that could not be read.
  void reject(uint32_t seq, const char* why) { send_cack(seq, why); }

  // Starts a take without a command: the raw window behind detection `det`
  // (n samples of the firmware's sensor at `rate`).
  void begin_window(uint32_t rate, uint32_t ch, uint32_t n, uint32_t det) {
    if (!active_) begin(rate, ch, n, static_cast<int64_t>(det));
  }

  // Samples lost before the next one (ring overflow, schedule fallen
  // behind): the partial frame goes out, the index jumps by k (the host sees
  // the gap where it is), k counts toward n and into cend's drop.
  void lost(uint32_t k) {
    if (!active_ || k == 0) return;
    flush();
    const uint32_t room = n_ ? n_ - next_ : k;
    const uint32_t d = k < room ? k : room;
    next_ += d;
    dropped_ += d;
    if (n_ && next_ >= n_) finish("done");
  }

  // Mic: up to k 16-bit samples; the first was taken at t_us. Returns how
  // many it took (fewer when the take ended).
  size_t push_pcm16(const int16_t* s, size_t k, uint32_t t_us) {
    size_t used = 0;
    while (active_ && used < k) {
      if (fill_ == 0) t_us_ = t_us + static_cast<uint32_t>(
          (static_cast<uint64_t>(used) * 1000000u) / (rate_ ? rate_ : 1u));
      const int16_t v = s[used++];
      memcpy(frame_ + 2u * fill_, &v, 2);
      after_sample();
    }
    return used;
  }

  // IMU: one sample of ch() float32 values taken at t_us.
  void push_imu(const float* v, uint32_t t_us) {
    if (!active_) return;
    if (fill_ == 0) t_us_ = t_us;
    memcpy(frame_ + 4u * ch_ * fill_, v, 4u * ch_);
    after_sample();
  }

  // Ends the take now (an error on the device).
  void abort(const char* why) { finish(why); }

 private:
  void clear() {
    rate_ = ch_ = n_ = spf_ = 0;
    seq_ = next_ = first_ = fill_ = dropped_ = t_us_ = 0;
    sent_ = 0;
    sensor_bytes_ = 0;
  }

  void out(size_t len) {
    if (len) sink_(line_, len, ctx_);
  }

  void send_cack(uint32_t seq, const char* why) {
    LineWriter w(line_, cap_);
    out(encode_cack(w, seq, why == nullptr, why));
  }

  void begin(uint32_t rate, uint32_t ch, uint32_t n, int64_t det) {
    clear();
    take_no_ += 1;
    rate_ = rate;
    ch_ = cfg_.sensor == kSensorMic ? 1u : ch;
    n_ = n;
    spf_ = capture_spf(cfg_.sensor, ch_);
    sensor_bytes_ = cfg_.sensor == kSensorMic ? 2u : 4u * ch_;
    active_ = true;
    LineWriter w(line_, cap_);
    const TakeHeader h = {take_no_, cfg_.sensor, rate_, ch_, n_, spf_,
                          cfg_.board, cfg_.rev, cfg_.fw, det};
    out(encode_cst(w, h));
  }

  void after_sample() {
    if (fill_ == 0) first_ = next_;
    ++fill_;
    ++next_;
    if (fill_ >= spf_) flush();
    if (n_ && next_ >= n_) finish("done");
  }

  void flush() {
    if (fill_ == 0) return;
    LineWriter w(line_, cap_);
    const size_t len = encode_smp(w, take_no_, seq_, first_, fill_, frame_,
                                  static_cast<size_t>(fill_) * sensor_bytes_, t_us_);
    if (len) {
      out(len);
    } else {
      dropped_ += fill_;   // cannot happen with a big enough line buffer: counted, not hidden
    }
    ++seq_;
    ++sent_;
    fill_ = 0;
  }

  void finish(const char* why) {
    if (!active_) return;
    flush();
    LineWriter w(line_, cap_);
    active_ = false;
    out(encode_cend(w, take_no_, next_, sent_, dropped_, why));
  }

  CaptureConfig cfg_;
  char* line_;
  size_t cap_;
  LineSink sink_;
  void* ctx_;
  uint32_t take_no_;
  bool active_;
  bool det_windows_;
  uint32_t rate_, ch_, n_, spf_;
  uint32_t seq_, next_, first_, fill_, dropped_, t_us_, sent_;
  uint32_t sensor_bytes_;
  uint8_t frame_[kSmpMicBytes > kSmpImuBytes ? kSmpMicBytes : kSmpImuBytes];
};

// Line buffer a capture needs: a full mic frame (240 B as 320 base64
// characters) with its fields and checksum.
constexpr size_t kCaptureLineBytes = 400;

}  // namespace nanoml

#endif  // NANOML_CAPTURE_H_
