// Seeded random / mutated frame run for nanoml::FrameParser and LineWriter.
// Built by tests/test_protocol_fuzz.py with -fsanitize=address,undefined:
// any out-of-bounds access aborts the run.
//
//   fuzz_frames FRAMES SEED
//
// Every iteration builds a valid "in" frame with a random seq and payload,
// then (most of the time) damages it: flipped/inserted/deleted bytes, cut
// lines, wrong len, huge numbers, random garbage, runs without newlines.
// Invariants checked on every event:
//  - the destination is a heap block of exactly `capacity` bytes (ASan);
//  - a kFrame never claims more than `capacity` bytes;
//  - an undamaged frame is always accepted, with its exact seq and payload;
//  - a frame is never reported for a line whose CRC does not match
//    (checked by recomputing over the bytes fed since the line start).
// It also fills LineWriters of random small capacities with random fields.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nanoml_protocol.h"

namespace {

uint64_t g_rng;
uint32_t rnd() {  // xorshift64*
  g_rng ^= g_rng >> 12;
  g_rng ^= g_rng << 25;
  g_rng ^= g_rng >> 27;
  return static_cast<uint32_t>((g_rng * 2685821657736338717ull) >> 32);
}
uint32_t rnd(uint32_t n) { return n ? rnd() % n : 0; }

constexpr size_t kMaxFrame = 9000;
char g_line[2 * kMaxFrame + 256];
uint8_t g_payload[kMaxFrame];

int fail(const char* what, unsigned long it) {
  fprintf(stderr, "FAIL at iteration %lu: %s\n", it, what);
  return 1;
}

size_t build_frame(uint32_t seq, const uint8_t* p, size_t n, size_t claimed_len) {
  size_t k = static_cast<size_t>(snprintf(g_line, sizeof(g_line), "~nm in seq=%u len=%zu hex=", seq, claimed_len));
  static const char kHex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; ++i) {
    g_line[k++] = kHex[p[i] >> 4];
    g_line[k++] = kHex[p[i] & 15];
  }
  const uint16_t c = nanoml::crc16(reinterpret_cast<const uint8_t*>(g_line), k);
  k += static_cast<size_t>(snprintf(g_line + k, sizeof(g_line) - k, "*%04X\r\n", c));
  return k;
}

void fuzz_writer(unsigned long it) {
  const size_t cap = rnd(300);
  char* buf = new char[cap ? cap : 1];
  nanoml::LineWriter w(buf, cap);
  w.begin(rnd(2) ? "res" : "hello");
  const int nf = static_cast<int>(rnd(8));
  for (int f = 0; f < nf; ++f) {
    switch (rnd(6)) {
      case 0: w.field_uint("seq", rnd()); break;
      case 1: w.field_int("top", static_cast<int32_t>(rnd())); break;
      case 2: {
        uint32_t bits = rnd();
        float v;
        memcpy(&v, &bits, sizeof(v));
        w.field_float("f", v);
        break;
      }
      case 3: {
        float v[12];
        for (int i = 0; i < 12; ++i) {
          uint32_t bits = rnd();
          memcpy(&v[i], &bits, sizeof(float));
        }
        w.field_floats("out", v, rnd(13));
        break;
      }
      case 4: {
        char text[40];
        const size_t n = rnd(39);
        for (size_t i = 0; i < n; ++i) text[i] = static_cast<char>(1 + rnd(255));
        text[n] = '\0';
        w.field("msg", text);
        break;
      }
      default: {
        const char* items[] = {"CONV_2D", "a b", "x,y", "%"};
        w.field_list("ops", items, rnd(5));
      }
    }
  }
  const size_t n = w.finish();
  if (n) {
    // A finished line is well formed: prefix, *CCCC\r\n, NUL inside the buffer.
    if (n + 1 > cap || buf[n] != '\0' || memcmp(buf, "~nm ", 4) != 0 || buf[n - 1] != '\n' ||
        buf[n - 7] != '*') {
      fprintf(stderr, "bad LineWriter output at %lu\n", it);
      abort();
    }
  }
  (void)it;
  delete[] buf;
}

}  // namespace

int main(int argc, char** argv) {
  const unsigned long frames = argc > 1 ? strtoul(argv[1], nullptr, 10) : 1000000ul;
  g_rng = (argc > 2 ? strtoull(argv[2], nullptr, 10) : 1ull) * 0x9E3779B97F4A7C15ull + 1;

  unsigned long accepted = 0, rejected = 0, clean = 0, events = 0;
  size_t capacity = 0;
  uint8_t* dst = nullptr;
  nanoml::FrameParser* parser = nullptr;
  // Bytes fed since the parser's line start, to recheck the CRC of any kFrame.
  static uint8_t since_start[2 * kMaxFrame + 4096];
  size_t since = 0;

  for (unsigned long it = 0; it < frames; ++it) {
    if (it % 4096 == 0) {  // a new capacity every so often, incl. tiny ones
      delete parser;
      delete[] dst;
      capacity = 1 + rnd(rnd(2) ? 64 : 4096);
      dst = new uint8_t[capacity];
      parser = new nanoml::FrameParser(dst, capacity);
      since = 0;
    }
    if (it % 1024 == 0) fuzz_writer(it);

    const uint32_t seq = rnd(4) ? rnd(1000) : rnd();
    const size_t n = 1 + rnd(static_cast<uint32_t>(capacity < 600 ? capacity + 8 : 600));
    for (size_t i = 0; i < n; ++i) g_payload[i] = static_cast<uint8_t>(rnd());
    size_t claimed = n;
    const uint32_t kind = rnd(16);
    if (kind == 0) claimed = rnd(2) ? n + 1 + rnd(3) : (n > 1 ? n - 1 : 0);
    size_t len = build_frame(seq, g_payload, n, claimed);
    bool damaged = kind == 0 || n > capacity;
    if (kind >= 1 && kind <= 8) {  // mutate 1..4 bytes / insert / delete
      damaged = true;
      const int edits = 1 + static_cast<int>(rnd(4));
      for (int e = 0; e < edits && len > 1; ++e) {
        const size_t at = rnd(static_cast<uint32_t>(len));
        switch (rnd(3)) {
          case 0: g_line[at] = static_cast<char>(rnd(256)); break;
          case 1:
            if (len + 1 < sizeof(g_line)) {
              memmove(g_line + at + 1, g_line + at, len - at);
              g_line[at] = static_cast<char>(rnd(256));
              ++len;
            }
            break;
          default:
            memmove(g_line + at, g_line + at + 1, len - at - 1);
            --len;
        }
      }
    } else if (kind == 9) {  // cut short (no newline: the next line merges in)
      damaged = true;
      len = rnd(static_cast<uint32_t>(len));
    } else if (kind == 10) {  // random garbage line
      damaged = true;
      len = rnd(200);
      for (size_t i = 0; i < len; ++i) g_line[i] = static_cast<char>(rnd(256));
    } else if (kind == 11) {  // huge numbers
      damaged = true;
      len = static_cast<size_t>(snprintf(g_line, sizeof(g_line), "~nm in seq=%u%u len=99999999999%u hex=00*0000\r\n",
                                         rnd(), rnd(), rnd()));
    } else if (kind == 12) {  // a foreign line (the parser must ignore it silently)
      len = static_cast<size_t>(snprintf(g_line, sizeof(g_line), "debug: value=%u ~nm in\r\n", rnd()));
    }

    // A frame the parser must accept has to start at a line start: after damage
    // the previous line may have left the parser mid-line, so a clean frame is
    // checked only when we know the state (the previous event ended a line).
    const bool expect_clean = !damaged && kind != 12 && since == 0;
    bool got_clean = false;
    for (size_t i = 0; i < len; ++i) {
      const uint8_t b = static_cast<uint8_t>(g_line[i]);
      if (since < sizeof(since_start)) since_start[since] = b;
      ++since;
      const nanoml::FrameStatus st = parser->feed(b);
      if (st == nanoml::FrameStatus::kNone) {
        if (b == '\n') since = 0;
        continue;
      }
      ++events;
      if (st == nanoml::FrameStatus::kFrame) {
        ++accepted;
        if (parser->length() > capacity || parser->length() == 0) return fail("frame longer than capacity", it);
        // Recheck: the bytes since line start must end in a valid CRC.
        if (since <= sizeof(since_start)) {
          size_t star = since;
          while (star > 0 && since_start[star - 1] != '*') --star;
          if (star == 0) return fail("frame without '*'", it);
          const uint16_t c = nanoml::crc16(since_start, star - 1);
          char want[5];
          snprintf(want, sizeof(want), "%04X", c);
          for (int k = 0; k < 4; ++k) {
            char got = static_cast<char>(since_start[star + k]);
            if (got >= 'a' && got <= 'f') got = static_cast<char>(got - 32);
            if (got != want[k]) return fail("frame accepted with a wrong CRC", it);
          }
        }
        if (expect_clean && i + 1 == len) {
          got_clean = true;
          if (parser->seq() != seq || parser->length() != n || memcmp(dst, g_payload, n) != 0)
            return fail("clean frame decoded wrongly", it);
        }
      } else {
        ++rejected;
        const char* why = parser->reject_reason();
        if (strcmp(why, "len") && strcmp(why, "crc") && strcmp(why, "overflow") && strcmp(why, "syntax") &&
            strcmp(why, "type"))
          return fail("unknown reject reason", it);
      }
      if (b == '\n') since = 0;
    }
    if (expect_clean) {
      ++clean;
      if (!got_clean) return fail("clean frame not accepted", it);
    }
    if (rnd(64) == 0) {  // resync now and then, as a firmware would after a timeout
      parser->reset();
      since = 0;
    }
  }
  delete parser;
  delete[] dst;
  printf("frames=%lu clean=%lu accepted=%lu rejected=%lu events=%lu\n", frames, clean, accepted, rejected, events);
  return 0;
}
