// Host build of sketches/common/nanoml_protocol.h, driven by
// tests/test_protocol_cpp.py to check that the C++ and Python sides agree.
//
//   protocol_tool consts               constants, one "name=value" per line
//   protocol_tool emit                 sample lines of every device->host type
//   protocol_tool floats               stdin: float bit patterns (hex), stdout: format_float
//   protocol_tool frames CAPACITY      stdin: raw bytes for FrameParser, stdout: one line per event
//   protocol_tool synth N SEED DTYPE   synthetic_fill bytes as hex, then the final state
//   protocol_tool seed SEQ             synthetic_seed(SEQ)
//   protocol_tool crc                  stdin: bytes, stdout: crc16 as 4 hex digits
//   protocol_tool writer CAP           a line too long for CAP: finish() must return 0
//   protocol_tool stream               a res with the real-time fields, then det lines

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "nanoml_protocol.h"

static int consts() {
  printf("kProtocolVersion=%d\n", nanoml::kProtocolVersion);
  printf("kLinePrefix=%s\n", nanoml::kLinePrefix);
  printf("kMaxLineLength=%zu\n", nanoml::kMaxLineLength);
  printf("kMaxDigits=%zu\n", nanoml::kMaxDigits);
  printf("kWhyLen=%s\n", nanoml::kWhyLen);
  printf("kWhyCrc=%s\n", nanoml::kWhyCrc);
  printf("kWhyOverflow=%s\n", nanoml::kWhyOverflow);
  printf("kWhySyntax=%s\n", nanoml::kWhySyntax);
  printf("kWhyType=%s\n", nanoml::kWhyType);
  printf("kWhyBusy=%s\n", nanoml::kWhyBusy);
  printf("kDtypeFloat32=%d\n", nanoml::kDtypeFloat32);
  printf("kDtypeUint8=%d\n", nanoml::kDtypeUint8);
  printf("kDtypeInt16=%d\n", nanoml::kDtypeInt16);
  printf("kDtypeInt8=%d\n", nanoml::kDtypeInt8);
  printf("kLcgMul=%u\n", nanoml::kLcgMul);
  printf("kLcgAdd=%u\n", nanoml::kLcgAdd);
  printf("kSeedMul=%u\n", nanoml::kSeedMul);
  return 0;
}

static void out(nanoml::LineWriter& w) {
  const size_t n = w.finish();
  if (n == 0) {
    fprintf(stderr, "line overflowed\n");
    exit(3);
  }
  fwrite(w.data(), 1, n, stdout);
}

static int emit() {
  static char buf[1024];
  nanoml::LineWriter w(buf, sizeof(buf));
  const char* ops[] = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX"};
  const char* in[] = {"int8:1x49x40x1"};
  const char* outs[] = {"int8:1x4", "float32:"};
  w.begin("hello");
  w.field_uint("proto", nanoml::kProtocolVersion);
  w.field("fw", "0.1.0 test build");
  w.field("model", "0123456789ab");
  w.field("board", "nano33ble_sense");
  w.field("runtime", "chirale_2.0.0");
  w.field_uint("arena", 65536);
  w.field_uint("used", 12345);
  w.field_list("ops", ops, 4);
  w.field_list("in", in, 1);
  w.field_list("out", outs, 2);
  w.field("input", "synthetic");
  w.field_uint("sim", 0);
  out(w);

  const float o[] = {0.0f, 0.5f, -1.25e-7f, 3.4028235e38f, 1e-45f, 123456.5f, -0.0f};
  const int32_t q[] = {-128, 0, 127, 2147483647, -2147483647 - 1};
  w.begin("res");
  w.field_uint("seq", 4294967295u);
  w.field_uint("us", 1234);
  w.field_floats("out", o, sizeof(o) / sizeof(o[0]));
  w.field_int("top", 5);
  w.field_ints("q", q, sizeof(q) / sizeof(q[0]));
  w.field_uint("frame", 7);
  out(w);

  w.begin("op");
  w.field_uint("seq", 3);
  w.field_uint("i", 0);
  w.field("op", "CONV_2D");
  w.field_uint("cyc", 123456789);
  w.field_uint("us", 1929);
  out(w);

  w.begin("arena");
  w.field_uint("min", 10240);
  w.field_uint("used", 9876);
  out(w);

  w.begin("err");
  w.field("code", "alloc");
  w.field("msg", "AllocateTensors() failed: 100% of arena=2048, need*more,\ttab\x01\xc3\xa9");
  out(w);

  w.begin("ack");
  w.field_uint("seq", 42);
  w.field_uint("ok", 0);
  w.field("why", nanoml::kWhyCrc);
  out(w);

  w.begin("res");  // a single float field
  w.field_uint("seq", 0);
  w.field_uint("us", 0);
  w.field_float("out", 0.1f);
  w.field_int("top", -1);
  out(w);
  return 0;
}

static int stream() {
  static char buf[256];
  nanoml::LineWriter w(buf, sizeof(buf));
  const int32_t q[] = {-128, 100, -100, 0};
  w.begin("res");
  w.field_uint("seq", 12);
  w.field_uint("us", 3456);
  w.field_float("out", 0.25f);
  w.field_int("top", 1);
  w.field_ints("q", q, 4);
  nanoml::field_stream_timing(w, 2190, 1840, 4294967295u);
  out(w);
  const char* labels[] = {"yes", "no go", "caf\xc3\xa9=1,2"};
  for (uint32_t i = 0; i < 3; ++i) {
    const size_t n = nanoml::encode_det(w, 12 + i, i, labels[i], 200 + i, 4294967295u - i);
    if (n == 0) return 3;
    fwrite(w.data(), 1, n, stdout);
  }
  char tiny[24];
  nanoml::LineWriter small(tiny, sizeof(tiny));
  return nanoml::encode_det(small, 1, 2, "yes", 255, 1000) == 0 ? 0 : 4;
}

static int floats() {
  unsigned int bits;
  char s[nanoml::kFloatChars];
  while (scanf("%x", &bits) == 1) {
    float f;
    memcpy(&f, &bits, sizeof(f));
    nanoml::format_float(f, s);
    puts(s);
  }
  return 0;
}

static int frames(size_t capacity) {
  // Exactly `capacity` bytes on the heap: AddressSanitizer flags any write past it.
  uint8_t* dst = new uint8_t[capacity ? capacity : 1];
  nanoml::FrameParser p(dst, capacity);
  int c;
  while ((c = getchar()) != EOF) {
    const nanoml::FrameStatus st = p.feed(static_cast<uint8_t>(c));
    if (st == nanoml::FrameStatus::kFrame) {
      printf("frame %u %zu ", p.seq(), p.length());
      for (size_t i = 0; i < p.length(); ++i) printf("%02x", dst[i]);
      printf("\n");
    } else if (st == nanoml::FrameStatus::kRejected) {
      printf("reject %u %s\n", p.seq(), p.reject_reason());
    }
  }
  delete[] dst;
  return 0;
}

static int synth(size_t n, uint32_t seed, int dtype) {
  std::vector<uint8_t> buf(n);
  const uint32_t s = nanoml::synthetic_fill(buf.data(), n, seed, dtype);
  for (size_t i = 0; i < n; ++i) printf("%02x", buf[i]);
  printf("\n%u\n", s);
  return 0;
}

static int crc() {
  std::vector<uint8_t> data;
  int c;
  while ((c = getchar()) != EOF) data.push_back(static_cast<uint8_t>(c));
  printf("%04X\n", nanoml::crc16(data.data(), data.size()));
  return 0;
}

static int writer(size_t cap) {
  // Heap buffer of exactly `cap` bytes: ASan flags a write past it.
  char* buf = new char[cap];
  nanoml::LineWriter w(buf, cap);
  w.begin("err");
  w.field("msg", "a fairly long message that will not fit in a small buffer, with % and *");
  const float f[] = {1.5f, 2.5f, 3.5f};
  w.field_floats("out", f, 3);
  const size_t n = w.finish();
  printf("%zu\n", n);
  delete[] buf;
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* mode = argv[1];
  if (!strcmp(mode, "consts")) return consts();
  if (!strcmp(mode, "emit")) return emit();
  if (!strcmp(mode, "floats")) return floats();
  if (!strcmp(mode, "frames") && argc == 3) return frames(strtoul(argv[2], nullptr, 10));
  if (!strcmp(mode, "synth") && argc == 5)
    return synth(strtoul(argv[2], nullptr, 10), static_cast<uint32_t>(strtoul(argv[3], nullptr, 10)),
                 atoi(argv[4]));
  if (!strcmp(mode, "seed") && argc == 3)
    return printf("%u\n", nanoml::synthetic_seed(static_cast<uint32_t>(strtoul(argv[2], nullptr, 10)))) < 0;
  if (!strcmp(mode, "crc")) return crc();
  if (!strcmp(mode, "stream")) return stream();
  if (!strcmp(mode, "writer") && argc == 3) return writer(strtoul(argv[2], nullptr, 10));
  return 2;
}
