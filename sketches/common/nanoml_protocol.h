// nanoml serial protocol, device side: a header-only library.
//
// The format is specified in docs/protocol.md; the Python side
// (nanoml/serial/protocol.py) holds the same constants and tests check that
// this header agrees with it (tests/test_protocol_cpp.py).
//
// Every nanoml line, in both directions, is ASCII:
//
//     ~nm <type> <key>=<value> <key>=<value>...*<CCCC>\r\n
//
// CCCC = CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no
// xorout) of every byte from '~' up to, not including, '*', as 4 upper-case
// hex digits.
//
// Constraints (it must build for a Cortex-M4 with arm-none-eabi-g++
// -std=gnu++14 -fno-rtti -fno-exceptions): no heap, no STL, no exceptions, no
// printf("%f") (newlib-nano has no float printf): numbers are formatted here.
// Every write is bounded by a capacity given by the caller: a malformed or
// hostile frame can never write past a buffer (fuzzed in tests/cpp/).

#ifndef NANOML_PROTOCOL_H_
#define NANOML_PROTOCOL_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace nanoml {

constexpr int kProtocolVersion = 1;

// Every nanoml line starts with this; anything else is a foreign line.
constexpr char kLinePrefix[] = "~nm ";
// Longest line (including "\r\n") a receiver must accept, other than the hex
// payload of an "in" frame. The LineWriter is bounded by its own buffer.
constexpr size_t kMaxLineLength = 256;
// Longest decimal number field in an "in" frame (uint32 fits in 10 digits).
constexpr size_t kMaxDigits = 10;

// Reject reasons (the `why=` token of an "ack ok=0").
constexpr char kWhyLen[] = "len";            // len missing/0/> capacity, or hex count != 2*len
constexpr char kWhyCrc[] = "crc";            // checksum mismatch
constexpr char kWhyOverflow[] = "overflow";  // a number longer than kMaxDigits / above uint32
constexpr char kWhySyntax[] = "syntax";      // anything else malformed
constexpr char kWhyType[] = "type";          // a nanoml line of a type the device does not accept
constexpr char kWhyBusy[] = "busy";          // (firmware) still working on the previous frame

// TFLite TensorType codes used by synthetic_fill().
constexpr int kDtypeFloat32 = 0;
constexpr int kDtypeUint8 = 3;
constexpr int kDtypeInt16 = 7;
constexpr int kDtypeInt8 = 9;

// Synthetic test pattern: a 32-bit LCG (Numerical Recipes constants).
constexpr uint32_t kLcgMul = 1664525u;
constexpr uint32_t kLcgAdd = 1013904223u;
// Inference number `seq` seeds the pattern with seq * kSeedMul (mod 2^32).
constexpr uint32_t kSeedMul = 2654435761u;  // 0x9E3779B1

// ---------------------------------------------------------------------------
// CRC-16/CCITT-FALSE, bitwise (no 512-byte table in flash). crc16("123456789")
// == 0x29B1. Pass the previous result as `crc` to continue over several chunks.
inline uint16_t crc16_update(uint16_t crc, uint8_t byte) {
  uint32_t c = crc ^ (static_cast<uint32_t>(byte) << 8);
  for (int i = 0; i < 8; ++i) {
    c = (c & 0x8000u) ? ((c << 1) ^ 0x1021u) : (c << 1);
  }
  crc = static_cast<uint16_t>(c & 0xFFFFu);
  return crc;
}

inline uint16_t crc16(const uint8_t* data, size_t n, uint16_t crc = 0xFFFF) {
  for (size_t i = 0; i < n; ++i) crc = crc16_update(crc, data[i]);
  return crc;
}

namespace detail {

constexpr char kHexUpper[] = "0123456789ABCDEF";

inline int hex_value(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Characters a text value carries percent-encoded (%XX, upper-case hex).
inline bool needs_escape(uint8_t c) {
  return c <= 0x20 || c >= 0x7F || c == '%' || c == '*' || c == '=' || c == ',';
}

// Writes the decimal digits of v into out (no terminator); returns the count.
inline size_t utoa(uint32_t v, char* out) {
  char tmp[10];
  size_t n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10u);
    v /= 10u;
  } while (v != 0 && n < sizeof(tmp));
  for (size_t i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
  return n;
}

// Powers of ten that a double holds exactly (10^0 .. 10^22).
inline double pow10_exact(int k) {
  static const double kPow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                    1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  return kPow10[k < 0 ? 0 : (k > 22 ? 22 : k)];
}

// v * 10^k for any k in [-90, 90], in steps that stay exact where they can.
inline double scale10(double v, int k) {
  while (k > 22) { v *= 1e22; k -= 22; }
  while (k < -22) { v /= 1e22; k += 22; }
  return k >= 0 ? v * pow10_exact(k) : v / pow10_exact(-k);
}

}  // namespace detail

// Formats a float like C's "%.6g" (6 significant digits, trailing zeros
// removed, exponent form below 1e-4 and from 1e6 up: "1.5", "-0.000123",
// "1.23457e+06", "1e-05", "nan", "inf", "-inf", "0", "-0"). Needs no printf
// and no libm. Writes at most 15 chars + NUL; `out` must hold 16 bytes.
// Returns the length written (without the NUL).
constexpr size_t kFloatChars = 16;
inline size_t format_float(float value, char* out) {
  size_t n = 0;
  uint32_t bits;
  memcpy(&bits, &value, sizeof(bits));
  const bool neg = (bits >> 31) != 0;
  const uint32_t exp_bits = (bits >> 23) & 0xFFu;
  const uint32_t mant = bits & 0x7FFFFFu;
  if (exp_bits == 0xFFu) {
    const char* s = mant ? "nan" : (neg ? "-inf" : "inf");
    n = strlen(s);
    memcpy(out, s, n + 1);
    return n;
  }
  if (neg) out[n++] = '-';
  if (exp_bits == 0 && mant == 0) {
    out[n++] = '0';
    out[n] = '\0';
    return n;
  }
  double a = value;
  if (a < 0) a = -a;
  // Decimal exponent e with 10^e <= a < 10^(e+1): estimate it from the binary
  // exponent (log10(2) ~ 77/256), then correct it.
  int e2 = exp_bits ? static_cast<int>(exp_bits) - 127 : -127;
  int e = (e2 * 77) >> 8;  // arithmetic shift: floor for negative values too
  while (e > -50 && detail::scale10(a, -e) < 1.0) --e;
  while (e < 40 && detail::scale10(a, -e) >= 10.0) ++e;
  // Six significant digits d in [100000, 999999], rounded half to even.
  double scaled = detail::scale10(a, 5 - e);
  uint32_t d = static_cast<uint32_t>(scaled);
  const double frac = scaled - static_cast<double>(d);
  if (frac > 0.5 || (frac == 0.5 && (d & 1u))) ++d;
  if (d >= 1000000u) { d /= 10u; ++e; }
  char digits[6];
  for (int i = 5; i >= 0; --i) { digits[i] = static_cast<char>('0' + d % 10u); d /= 10u; }
  int nd = 6;
  while (nd > 1 && digits[nd - 1] == '0') --nd;  // strip trailing zeros
  if (e >= -4 && e < 6) {
    if (e >= 0) {
      for (int i = 0; i <= e; ++i) out[n++] = i < nd ? digits[i] : '0';
      if (nd > e + 1) {
        out[n++] = '.';
        for (int i = e + 1; i < nd; ++i) out[n++] = digits[i];
      }
    } else {
      out[n++] = '0';
      out[n++] = '.';
      for (int i = 0; i < -e - 1; ++i) out[n++] = '0';
      for (int i = 0; i < nd; ++i) out[n++] = digits[i];
    }
  } else {
    out[n++] = digits[0];
    if (nd > 1) {
      out[n++] = '.';
      for (int i = 1; i < nd; ++i) out[n++] = digits[i];
    }
    out[n++] = 'e';
    int x = e;
    if (x < 0) { out[n++] = '-'; x = -x; } else { out[n++] = '+'; }
    if (x < 10) out[n++] = '0';
    n += detail::utoa(static_cast<uint32_t>(x), out + n);
  }
  out[n] = '\0';
  return n;
}

// ---------------------------------------------------------------------------
// LineWriter: builds one device->host line in a caller-provided buffer.
//
//   char buf[256];
//   nanoml::LineWriter w(buf, sizeof(buf));
//   w.begin("res");
//   w.field_uint("seq", seq);
//   w.field_uint("us", micros_taken);
//   w.field_floats("out", outputs, n);
//   w.field_int("top", top);
//   size_t len = w.finish();          // 0 = the line did not fit: send nothing
//   if (len) Serial.write(w.data(), len);
//
// Never writes past `cap`. `cap` must leave room for "*CCCC\r\n" and a NUL.
class LineWriter {
 public:
  LineWriter(char* buf, size_t cap) : buf_(buf), cap_(cap), len_(0), overflow_(false) {
    if (cap_ > 0) buf_[0] = '\0';
  }

  void begin(const char* type) {
    len_ = 0;
    overflow_ = false;
    put_str(kLinePrefix);
    put_str(type);
  }

  // Text value, percent-encoded (space % * = , control and non-ASCII bytes).
  void field(const char* key, const char* text) {
    key_eq(key);
    put_escaped(text);
  }

  void field_int(const char* key, int32_t v) {
    key_eq(key);
    put_int(v);
  }

  void field_uint(const char* key, uint32_t v) {
    key_eq(key);
    put_uint(v);
  }

  void field_float(const char* key, float v) {
    key_eq(key);
    put_float(v);
  }

  void field_floats(const char* key, const float* v, size_t n) {
    key_eq(key);
    for (size_t i = 0; i < n; ++i) {
      if (i) put_char(',');
      put_float(v[i]);
    }
  }

  void field_ints(const char* key, const int32_t* v, size_t n) {
    key_eq(key);
    for (size_t i = 0; i < n; ++i) {
      if (i) put_char(',');
      put_int(v[i]);
    }
  }

  // Bytes as upper-case hex digits, 2 per byte (a `hexbytes` value: layer chunks).
  void field_hex(const char* key, const uint8_t* data, size_t n) {
    key_eq(key);
    for (size_t i = 0; i < n; ++i) {
      put_char(detail::kHexUpper[data[i] >> 4]);
      put_char(detail::kHexUpper[data[i] & 0xF]);
    }
  }

  // Comma-separated list of text items, each percent-encoded.
  void field_list(const char* key, const char* const* items, size_t n) {
    key_eq(key);
    for (size_t i = 0; i < n; ++i) {
      if (i) put_char(',');
      put_escaped(items[i]);
    }
  }

  // Bytes as base64 without padding (a `b64` value: raw sample frames).
  void field_b64(const char* key, const uint8_t* data, size_t n) {
    static const char kB64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    key_eq(key);
    for (size_t i = 0; i < n; i += 3) {
      const uint32_t b0 = data[i];
      const uint32_t b1 = i + 1 < n ? data[i + 1] : 0u;
      const uint32_t b2 = i + 2 < n ? data[i + 2] : 0u;
      const uint32_t v = (b0 << 16) | (b1 << 8) | b2;
      put_char(kB64[(v >> 18) & 63u]);
      put_char(kB64[(v >> 12) & 63u]);
      if (i + 1 < n) put_char(kB64[(v >> 6) & 63u]);
      if (i + 2 < n) put_char(kB64[v & 63u]);
    }
  }

  // Appends "*CCCC\r\n" and a NUL. Returns the line length (without the NUL),
  // or 0 if anything did not fit (then send nothing).
  size_t finish() {
    if (overflow_ || len_ + 8 > cap_) {
      overflow_ = true;
      if (cap_ > 0) buf_[0] = '\0';
      return 0;
    }
    const uint16_t c = crc16(reinterpret_cast<const uint8_t*>(buf_), len_);
    buf_[len_++] = '*';
    buf_[len_++] = detail::kHexUpper[(c >> 12) & 0xF];
    buf_[len_++] = detail::kHexUpper[(c >> 8) & 0xF];
    buf_[len_++] = detail::kHexUpper[(c >> 4) & 0xF];
    buf_[len_++] = detail::kHexUpper[c & 0xF];
    buf_[len_++] = '\r';
    buf_[len_++] = '\n';
    buf_[len_] = '\0';
    return len_;
  }

  const char* data() const { return buf_; }
  size_t length() const { return len_; }
  bool overflowed() const { return overflow_; }

 private:
  void put_char(char c) {
    // Always keep one byte for the NUL written by finish().
    if (overflow_ || len_ + 1 >= cap_) {
      overflow_ = true;
      return;
    }
    buf_[len_++] = c;
  }
  void put_str(const char* s) {
    while (*s) put_char(*s++);
  }
  void key_eq(const char* key) {
    put_char(' ');
    put_str(key);
    put_char('=');
  }
  void put_escaped(const char* s) {
    for (; *s; ++s) {
      const uint8_t c = static_cast<uint8_t>(*s);
      if (detail::needs_escape(c)) {
        put_char('%');
        put_char(detail::kHexUpper[c >> 4]);
        put_char(detail::kHexUpper[c & 0xF]);
      } else {
        put_char(static_cast<char>(c));
      }
    }
  }
  void put_uint(uint32_t v) {
    char tmp[10];
    const size_t n = detail::utoa(v, tmp);
    for (size_t i = 0; i < n; ++i) put_char(tmp[i]);
  }
  void put_int(int32_t v) {
    if (v < 0) {
      put_char('-');
      put_uint(static_cast<uint32_t>(-(static_cast<int64_t>(v))));
    } else {
      put_uint(static_cast<uint32_t>(v));
    }
  }
  void put_float(float v) {
    char tmp[kFloatChars];
    const size_t n = format_float(v, tmp);
    for (size_t i = 0; i < n; ++i) put_char(tmp[i]);
  }

  char* buf_;
  size_t cap_;
  size_t len_;
  bool overflow_;
};

// ---------------------------------------------------------------------------
// Sensor pipelines (docs/protocol.md `res` and `det`).
//
// Real-time accounting, appended to a `res` line after its required fields:
// the stream time of the window's last sample (ms), the microseconds spent in
// the front end since the previous result, and the samples dropped since boot.
inline void field_stream_timing(LineWriter& w, uint32_t t_ms, uint32_t feature_us,
                                uint32_t dropped) {
  w.field_uint("t_ms", t_ms);
  w.field_uint("fus", feature_us);
  w.field_uint("drop", dropped);
}

// A whole `det` line (a detection of the recognizer) into `w`: the result's
// seq, the label index and name, its average score (0..255) and stream time.
// Returns the line length, 0 when it did not fit (then send nothing).
inline size_t encode_det(LineWriter& w, uint32_t seq, uint32_t index, const char* label,
                         uint32_t score, uint32_t t_ms) {
  w.begin("det");
  w.field_uint("seq", seq);
  w.field_uint("i", index);
  w.field("label", label);
  w.field_uint("score", score);
  w.field_uint("t_ms", t_ms);
  return w.finish();
}

// ---------------------------------------------------------------------------
// FrameParser: streaming parser for host->device input frames
//
//   ~nm in seq=<uint32> len=<bytes> hex=<2*len hex digits>*CCCC\r\n
//
// Feed it one received byte at a time. It decodes the hex straight into `dst`
// (never more than `capacity` bytes, never more than `len`), never buffers the
// line, and reports kFrame only once the whole line arrived and its CRC
// matched. kRejected is reported once per bad line (reject_reason() says why:
// "len", "crc", "overflow", "syntax", "type"); the rest of that line is then
// skipped. Lines that do not start with "~nm " (foreign) are ignored
// silently. On kRejected the bytes in `dst` are unspecified: do not invoke.
//
//   static int8_t input[...];          // e.g. the model's input tensor
//   nanoml::FrameParser parser(reinterpret_cast<uint8_t*>(input), sizeof(input));
//   while (Serial.available()) {
//     switch (parser.feed(Serial.read())) {
//       case nanoml::FrameStatus::kFrame:    /* ack ok=1, invoke */ break;
//       case nanoml::FrameStatus::kRejected: /* ack ok=0 why=parser.reject_reason() */ break;
//       default: break;
//     }
//   }
enum class FrameStatus { kNone, kFrame, kRejected };

class FrameParser {
 public:
  FrameParser(uint8_t* dst, size_t capacity) : dst_(dst), capacity_(capacity) { reset(); }

  void reset() {
    state_ = kLineStart;
    pos_ = 0;
    crc_ = 0xFFFF;
    number_ = 0;
    digits_ = 0;
    seq_ = 0;
    len_ = 0;
    written_ = 0;
    nibbles_ = 0;
    high_ = 0;
    rx_crc_ = 0;
    reason_ = "";
  }

  FrameStatus feed(uint8_t c) {
    switch (state_) {
      case kLineStart:
        crc_ = 0xFFFF;
        pos_ = 0;
        seq_ = 0;
        len_ = 0;
        written_ = 0;
        nibbles_ = 0;
        state_ = kPrefix;
        return feed(c);
      case kPrefix: {
        static const char kIn[] = "~nm in ";
        if (c == static_cast<uint8_t>(kIn[pos_])) {
          crc_ = crc16_update(crc_, c);
          if (++pos_ == sizeof(kIn) - 1) begin_literal("seq=", kSeqDigits);
          return FrameStatus::kNone;
        }
        if (pos_ >= 4) return reject(kWhyType, c);  // "~nm " then another type
        if (c == '\n') {                               // empty / short foreign line
          state_ = kLineStart;
          return FrameStatus::kNone;
        }
        state_ = kSkip;                                // foreign line: ignore
        return FrameStatus::kNone;
      }
      case kLiteral:
        if (c != static_cast<uint8_t>(literal_[pos_])) return reject(kWhySyntax, c);
        crc_ = crc16_update(crc_, c);
        if (literal_[++pos_] == '\0') {
          state_ = next_;
          number_ = 0;
          digits_ = 0;
          nibbles_ = 0;
        }
        return FrameStatus::kNone;
      case kSeqDigits:
      case kLenDigits: {
        if (c >= '0' && c <= '9') {
          if (++digits_ > kMaxDigits) return reject(kWhyOverflow, c);
          const uint64_t v = static_cast<uint64_t>(number_) * 10u + (c - '0');
          if (v > 0xFFFFFFFFull) return reject(kWhyOverflow, c);
          number_ = static_cast<uint32_t>(v);
          crc_ = crc16_update(crc_, c);
          if (state_ == kLenDigits && number_ > capacity_) return reject(kWhyLen, c);
          return FrameStatus::kNone;
        }
        if (c != ' ' || digits_ == 0) return reject(kWhySyntax, c);
        crc_ = crc16_update(crc_, c);
        if (state_ == kSeqDigits) {
          seq_ = number_;
          begin_literal("len=", kLenDigits);
        } else {
          if (number_ == 0) return reject(kWhyLen, c);
          len_ = number_;
          begin_literal("hex=", kHex);
        }
        return FrameStatus::kNone;
      }
      case kHex: {
        if (c == '*') {
          if (nibbles_ != 2u * len_) return reject(kWhyLen, c);
          state_ = kCrc;
          digits_ = 0;
          rx_crc_ = 0;
          return FrameStatus::kNone;
        }
        const int h = detail::hex_value(c);
        if (h < 0) return reject(kWhySyntax, c);
        if (nibbles_ >= 2u * len_) return reject(kWhyLen, c);
        crc_ = crc16_update(crc_, c);
        if ((nibbles_ & 1u) == 0) {
          high_ = static_cast<uint8_t>(h);
        } else if (written_ < len_ && written_ < capacity_) {
          dst_[written_++] = static_cast<uint8_t>((high_ << 4) | h);
        }
        ++nibbles_;
        return FrameStatus::kNone;
      }
      case kCrc: {
        const int h = detail::hex_value(c);
        if (h < 0) return reject(kWhySyntax, c);
        rx_crc_ = static_cast<uint16_t>((rx_crc_ << 4) | h);
        if (++digits_ == 4) state_ = kCr;
        return FrameStatus::kNone;
      }
      case kCr:
        if (c == '\r') {
          state_ = kLf;
          return FrameStatus::kNone;
        }
        return end_of_line(c);
      case kLf:
        return end_of_line(c);
      case kSkip:
        if (c == '\n') state_ = kLineStart;
        return FrameStatus::kNone;
    }
    return FrameStatus::kNone;
  }

  uint32_t seq() const { return seq_; }
  size_t length() const { return len_; }
  size_t capacity() const { return capacity_; }
  const char* reject_reason() const { return reason_; }

 private:
  enum State { kLineStart, kPrefix, kLiteral, kSeqDigits, kLenDigits, kHex, kCrc, kCr, kLf, kSkip };

  void begin_literal(const char* lit, State next) {
    literal_ = lit;
    pos_ = 0;
    next_ = next;
    state_ = kLiteral;
  }

  FrameStatus end_of_line(uint8_t c) {
    if (c != '\n') return reject(kWhySyntax, c);
    state_ = kLineStart;
    if (rx_crc_ != crc_) {
      reason_ = kWhyCrc;
      return FrameStatus::kRejected;
    }
    if (written_ != len_) {  // cannot happen (hex count checked); belt and braces
      reason_ = kWhyLen;
      return FrameStatus::kRejected;
    }
    reason_ = "";
    return FrameStatus::kFrame;
  }

  FrameStatus reject(const char* why, uint8_t c) {
    reason_ = why;
    state_ = (c == '\n') ? kLineStart : kSkip;
    return FrameStatus::kRejected;
  }

  uint8_t* dst_;
  size_t capacity_;
  State state_;
  State next_;
  const char* literal_;
  size_t pos_;
  uint16_t crc_;
  uint32_t number_;
  size_t digits_;
  uint32_t seq_;
  size_t len_;
  size_t written_;
  size_t nibbles_;
  uint8_t high_;
  uint16_t rx_crc_;
  const char* reason_;
};

// ---------------------------------------------------------------------------
// Raw sample capture (docs/protocol.md "Capture"; the Python twin of the
// command parser is nanoml/serial/commands.py, tests/test_capture_protocol.py
// compares them on the same random streams).
//
// Host -> device commands, short lines (kMaxCommandLine bytes with "\r\n"),
// fields in any order, each once, all required:
//     ~nm cap seq=<u> sensor=<mic|imu> rate=<u> ch=<u> n=<u>*CCCC
//     ~nm stop seq=<u>*CCCC
//     ~nm dwin seq=<u> on=<0|1>*CCCC
// Device -> host: cack (answer), cst (take start), smp (samples), cend.
constexpr size_t kMaxCommandLine = 96;
constexpr size_t kSmpMicBytes = 240;   // 120 int16 samples per full frame
constexpr size_t kSmpImuBytes = 144;   // 12, 6 or 4 samples of 3, 6 or 9 float32 channels

// Refusal tokens (the `why=` of "cack ok=0").
constexpr char kCapWhySensor[] = "sensor";
constexpr char kCapWhyRate[] = "rate";
constexpr char kCapWhyCh[] = "ch";
constexpr char kCapWhyBusy[] = "busy";
constexpr char kCapWhyIdle[] = "idle";
constexpr char kCapWhyWindow[] = "window";
constexpr char kCapWhyCrc[] = "crc";
constexpr char kCapWhySyntax[] = "syntax";

enum CommandType { kCmdNone = 0, kCmdCap = 1, kCmdStop = 2, kCmdDwin = 3 };
enum SensorId { kSensorNone = 0, kSensorMic = 1, kSensorImu = 2 };

struct Command {
  int type;        // CommandType
  uint32_t seq;
  int sensor;      // SensorId (cap)
  uint32_t rate;   // cap
  uint32_t ch;     // cap
  uint32_t n;      // cap: samples, 0 = until stop
  bool on;         // dwin
};

// kNone: nothing (mid-line, a foreign line, an `in ` frame); kCommand: a
// verified command (command()); kRejected: a command line that is not valid
// (reject_reason(), seq() when it was read before the fault); kOther: a
// nanoml line of another type ended (the serial firmware's FrameParser
// answers it).
enum class CommandStatus { kNone, kCommand, kRejected, kOther };

class CommandParser {
 public:
  CommandParser() { reset(); }

  void reset() {
    len_ = 0;
    active_ = false;
    skip_ = false;
    overflow_ = false;
  }

  CommandStatus feed(uint8_t c) {
    if (c == '\n') {
      const CommandStatus st = active_ ? parse() : CommandStatus::kNone;
      reset();
      return st;
    }
    if (skip_ || overflow_) return CommandStatus::kNone;
    if (!active_) {
      if (c != static_cast<uint8_t>(kLinePrefix[len_])) {
        len_ = 0;
        skip_ = true;
        return CommandStatus::kNone;
      }
      buf_[len_++] = c;
      if (len_ == 4) active_ = true;
      return CommandStatus::kNone;
    }
    if (len_ < kMaxCommandLine - 1) {
      buf_[len_++] = c;
    } else {
      overflow_ = true;
    }
    return CommandStatus::kNone;
  }

  const Command& command() const { return cmd_; }
  uint32_t seq() const { return cmd_.seq; }
  const char* reject_reason() const { return reason_; }

 private:
  static bool same(const uint8_t* a, size_t n, const char* lit) {
    const size_t k = strlen(lit);
    return n == k && memcmp(a, lit, k) == 0;
  }

  static bool parse_uint(const uint8_t* v, size_t n, uint32_t* out) {
    if (n == 0 || n > kMaxDigits) return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; ++i) {
      if (v[i] < '0' || v[i] > '9') return false;
      x = x * 10u + static_cast<uint64_t>(v[i] - '0');
    }
    if (x > 0xFFFFFFFFull) return false;
    *out = static_cast<uint32_t>(x);
    return true;
  }

  CommandStatus refuse(const char* why) {
    reason_ = why;
    return CommandStatus::kRejected;
  }

  // One field `key=value` of a command; returns the refusal token or nullptr.
  const char* field(const uint8_t* t, size_t n, unsigned* seen) {
    size_t eq = 0;
    while (eq < n && t[eq] != '=') ++eq;
    if (eq == n) return kCapWhySyntax;
    const uint8_t* v = t + eq + 1;
    const size_t vn = n - eq - 1;
    static const char* const kKeys[] = {"seq", "sensor", "rate", "ch", "n", "on"};
    // keys allowed per command type (bit k = kKeys[k])
    const unsigned allowed = cmd_.type == kCmdCap ? 0x1Fu : (cmd_.type == kCmdStop ? 0x01u : 0x21u);
    int key = -1;
    for (int k = 0; k < 6; ++k) {
      if (same(t, eq, kKeys[k])) key = k;
    }
    if (key < 0) return kCapWhySyntax;
    const unsigned bit = 1u << static_cast<unsigned>(key);
    if (!(allowed & bit) || (*seen & bit)) return kCapWhySyntax;
    *seen |= bit;
    if (key == 1) {
      if (same(v, vn, "mic")) {
        cmd_.sensor = kSensorMic;
      } else if (same(v, vn, "imu")) {
        cmd_.sensor = kSensorImu;
      } else {
        return kCapWhySensor;
      }
      return nullptr;
    }
    if (key == 5) {
      if (vn != 1 || (v[0] != '0' && v[0] != '1')) return kCapWhySyntax;
      cmd_.on = v[0] == '1';
      return nullptr;
    }
    uint32_t x = 0;
    if (!parse_uint(v, vn, &x)) return kCapWhySyntax;
    if (key == 0) cmd_.seq = x;
    if (key == 2) cmd_.rate = x;
    if (key == 3) cmd_.ch = x;
    if (key == 4) cmd_.n = x;
    return nullptr;
  }

  CommandStatus parse() {
    cmd_ = Command{kCmdNone, 0, kSensorNone, 0, 0, 0, false};
    reason_ = "";
    size_t n = len_;
    if (n > 0 && buf_[n - 1] == '\r') --n;
    const uint8_t* head = buf_ + 4;
    const size_t hn = n - 4;
    size_t end = hn;
    for (size_t i = 0; i < hn; ++i) {
      if (head[i] == ' ' || head[i] == '*') {
        end = i;
        break;
      }
    }
    // "~nm in " is an input frame (the FrameParser's); "~nm in" + anything
    // else is another line the FrameParser rejects (why=type): kOther.
    if (same(head, end, "in") && end < hn && head[end] == ' ') return CommandStatus::kNone;
    if (same(head, end, "cap")) {
      cmd_.type = kCmdCap;
    } else if (same(head, end, "stop")) {
      cmd_.type = kCmdStop;
    } else if (same(head, end, "dwin")) {
      cmd_.type = kCmdDwin;
    } else {
      return CommandStatus::kOther;
    }
    if (overflow_) return refuse(kCapWhySyntax);
    size_t star = n;
    for (size_t i = n; i > 0; --i) {
      if (buf_[i - 1] == '*') {
        star = i - 1;
        break;
      }
    }
    if (star == n || n - star != 5) return refuse(kCapWhySyntax);
    uint16_t rx = 0;
    for (size_t i = star + 1; i < n; ++i) {
      const int h = detail::hex_value(buf_[i]);
      if (h < 0) return refuse(kCapWhySyntax);
      rx = static_cast<uint16_t>((rx << 4) | static_cast<uint16_t>(h));
    }
    if (crc16(buf_, star) != rx) return refuse(kCapWhyCrc);
    const size_t rest = 4 + end;           // [rest, star): "" or " k=v k=v"
    if (rest < star && buf_[rest] != ' ') return refuse(kCapWhySyntax);
    unsigned seen = 0;
    if (rest < star) {
      size_t t = rest + 1;
      for (;;) {
        size_t e = t;
        while (e < star && buf_[e] != ' ') ++e;
        const char* why = field(buf_ + t, e - t, &seen);
        if (why != nullptr) return refuse(why);
        if (e >= star) break;
        t = e + 1;
      }
    }
    const unsigned need = cmd_.type == kCmdCap ? 0x1Fu : (cmd_.type == kCmdStop ? 0x01u : 0x21u);
    if (seen != need) return refuse(kCapWhySyntax);
    return CommandStatus::kCommand;
  }

  uint8_t buf_[kMaxCommandLine];
  size_t len_;
  bool active_;
  bool skip_;
  bool overflow_;
  Command cmd_;
  const char* reason_;
};

// The lines of a take. Each returns the line length, 0 when it did not fit.
inline size_t encode_cack(LineWriter& w, uint32_t seq, bool ok, const char* why) {
  w.begin("cack");
  w.field_uint("seq", seq);
  w.field_uint("ok", ok ? 1u : 0u);
  if (!ok && why && *why) w.field("why", why);
  return w.finish();
}

struct TakeHeader {
  uint32_t take;
  int sensor;            // SensorId
  uint32_t rate;
  uint32_t ch;
  uint32_t n;
  uint32_t spf;
  const char* board;
  const char* rev;
  const char* fw;
  int64_t det;           // seq of the det whose window this is, or -1
};

inline size_t encode_cst(LineWriter& w, const TakeHeader& h) {
  static const char* const kMicNames[] = {"mic"};
  static const char* const kMicUnits[] = {"pcm16"};
  static const char* const kImuNames[] = {"ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz"};
  static const char* const kImuUnits[] = {"g", "g", "g", "dps", "dps", "dps", "uT", "uT", "uT"};
  const bool mic = h.sensor == kSensorMic;
  const size_t ch = mic ? 1u : (h.ch > 9u ? 9u : static_cast<size_t>(h.ch));
  w.begin("cst");
  w.field_uint("take", h.take);
  w.field("sensor", mic ? "mic" : "imu");
  w.field_uint("rate", h.rate);
  w.field_uint("ch", h.ch);
  w.field_uint("n", h.n);
  w.field("fmt", mic ? "i16" : "f32");
  w.field_list("names", mic ? kMicNames : kImuNames, ch);
  w.field_list("units", mic ? kMicUnits : kImuUnits, ch);
  w.field_uint("spf", h.spf);
  w.field("board", h.board);
  w.field("rev", h.rev);
  w.field("fw", h.fw);
  if (h.det >= 0) w.field_uint("det", static_cast<uint32_t>(h.det));
  return w.finish();
}

inline size_t encode_smp(LineWriter& w, uint32_t take, uint32_t seq, uint32_t first,
                         uint32_t n, const uint8_t* data, size_t bytes, uint32_t t_us) {
  w.begin("smp");
  w.field_uint("take", take);
  w.field_uint("seq", seq);
  w.field_uint("i", first);
  w.field_uint("n", n);
  w.field_b64("d", data, bytes);
  w.field_uint("t_us", t_us);
  return w.finish();
}

inline size_t encode_cend(LineWriter& w, uint32_t take, uint32_t samples, uint32_t frames,
                          uint32_t dropped, const char* why) {
  w.begin("cend");
  w.field_uint("take", take);
  w.field_uint("samples", samples);
  w.field_uint("frames", frames);
  w.field_uint("drop", dropped);
  w.field("why", why);
  return w.finish();
}

// ---------------------------------------------------------------------------
// Deterministic synthetic input ("--input synthetic"). A 32-bit LCG
//     s = s * 1664525 + 1013904223   (mod 2^32), starting from s = seed,
// stepped once per element; the element is taken from the new state:
//     int8  : (int8_t)(s >> 24)          uint8: (uint8_t)(s >> 24)
//     int16 : (int16_t)(s >> 16)
//     float32: (float)((s >> 8) & 0xFFFF) / 32768.0f - 1.0f   (in [-1, 1))
//     other : bytes, (uint8_t)(s >> 24) per byte
// `n` is the buffer size in bytes (elements = n / element size; multi-byte
// elements little-endian, as stored on the device). Returns the final state;
// for a model with several inputs, input k+1 is seeded with the value
// returned for input k. Inference number `seq` uses seed = synthetic_seed(seq).
inline uint32_t synthetic_seed(uint32_t seq) { return seq * kSeedMul; }

inline uint32_t synthetic_fill(uint8_t* dst, size_t n, uint32_t seed, int dtype_code) {
  uint32_t s = seed;
  switch (dtype_code) {
    case kDtypeInt8:
    case kDtypeUint8:
    default:
      for (size_t i = 0; i < n; ++i) {
        s = s * kLcgMul + kLcgAdd;
        dst[i] = static_cast<uint8_t>(s >> 24);
      }
      break;
    case kDtypeInt16:
      for (size_t i = 0; i + 2 <= n; i += 2) {
        s = s * kLcgMul + kLcgAdd;
        const uint16_t v = static_cast<uint16_t>(s >> 16);
        dst[i] = static_cast<uint8_t>(v & 0xFF);
        dst[i + 1] = static_cast<uint8_t>(v >> 8);
      }
      break;
    case kDtypeFloat32:
      for (size_t i = 0; i + 4 <= n; i += 4) {
        s = s * kLcgMul + kLcgAdd;
        const float f = static_cast<float>((s >> 8) & 0xFFFFu) / 32768.0f - 1.0f;
        memcpy(dst + i, &f, sizeof(f));  // little-endian on the device and x86
      }
      break;
  }
  return s;
}

}  // namespace nanoml

#endif  // NANOML_PROTOCOL_H_
