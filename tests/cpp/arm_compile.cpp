// Compiled (not linked) by tests/test_protocol_cpp.py with the board's flags:
//   arm-none-eabi-g++ -mcpu=cortex-m4 -mthumb -mfloat-abi=softfp -mfpu=fpv4-sp-d16 -Os
//       -std=gnu++14 -fno-rtti -fno-exceptions -Wall -Wextra -Werror -c
// The test then checks the object needs no heap, no printf and no C++ runtime.

#include "nanoml_protocol.h"

static uint8_t g_input[1960];
static char g_line[256];

extern "C" void nanoml_sink(const char* data, size_t n);

extern "C" int nanoml_exercise(const uint8_t* rx, size_t n, float latency) {
  nanoml::FrameParser parser(g_input, sizeof(g_input));
  int frames = 0;
  for (size_t i = 0; i < n; ++i) {
    switch (parser.feed(rx[i])) {
      case nanoml::FrameStatus::kFrame: ++frames; break;
      case nanoml::FrameStatus::kRejected: nanoml_sink(parser.reject_reason(), 0); break;
      case nanoml::FrameStatus::kNone: break;
    }
  }
  nanoml::LineWriter w(g_line, sizeof(g_line));
  const float out[3] = {0.5f, -1.25e-7f, latency};
  const int32_t q[3] = {-128, 0, 127};
  const char* ops[2] = {"CONV_2D", "SOFTMAX"};
  w.begin("res");
  w.field_uint("seq", parser.seq());
  w.field_int("top", -1);
  w.field_float("lat", latency);
  w.field_floats("out", out, 3);
  w.field_ints("q", q, 3);
  w.field_list("ops", ops, 2);
  w.field("msg", "100% done");
  const size_t len = w.finish();
  nanoml_sink(w.data(), len);
  const uint32_t s = nanoml::synthetic_fill(g_input, sizeof(g_input), nanoml::synthetic_seed(7),
                                            nanoml::kDtypeInt8);
  return frames + static_cast<int>(s & 1u) + nanoml::crc16(g_input, 4) + nanoml::kProtocolVersion;
}
