// libFuzzer target for nanoml::FrameParser (and LineWriter text escaping).
//   clang++-14 -g -O1 -std=gnu++14 -fsanitize=fuzzer,address,undefined \
//       -I sketches/common tests/cpp/libfuzzer_frames.cpp -o /tmp/fuzz && /tmp/fuzz -runs=1000000
// tests/test_protocol_fuzz.py runs it briefly when clang's fuzzer runtime is installed.

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nanoml_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // First byte picks the capacity; the destination is a heap block of exactly
  // that size so AddressSanitizer catches any write past it.
  const size_t capacity = 1 + data[0] % 64;
  uint8_t* dst = new uint8_t[capacity];
  nanoml::FrameParser p(dst, capacity);
  for (size_t i = 1; i < size; ++i) {
    const nanoml::FrameStatus st = p.feed(data[i]);
    if (st == nanoml::FrameStatus::kFrame && (p.length() == 0 || p.length() > capacity)) __builtin_trap();
  }
  // The same bytes as text through a small LineWriter.
  char text[128];
  const size_t n = size - 1 < sizeof(text) - 1 ? size - 1 : sizeof(text) - 1;
  for (size_t i = 0; i < n; ++i) text[i] = data[1 + i] ? static_cast<char>(data[1 + i]) : 'x';
  text[n] = '\0';
  char* line = new char[capacity];
  nanoml::LineWriter w(line, capacity);
  w.begin("err");
  w.field("msg", text);
  const size_t len = w.finish();
  if (len && (len >= capacity || line[len] != '\0')) __builtin_trap();
  delete[] line;
  delete[] dst;
  return 0;
}
