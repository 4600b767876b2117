// Host driver for sketches/firmware/nanoml_layers.h (tests/test_firmware_layers.py):
// reads commands on stdin, writes protocol lines / numbers on stdout.
//   crc <hex|->                         CRC-32 of the bytes (decimal)
//   dump <cap> <frame> <op> <out> <name> <tensor> <dtype> <ndims> <d>... <quant> <scale> <zp>
//        <why|-> <hex|->                a lay header + its lch chunks (cap: line buffer bytes)
//   end <frame> <ops> <sent> <nested>   the lend line
//   track <b|e>...  .                   LayerTracker: one result per e (op index or -1)
//   hello <0|1>                         write_hello (nanoml_app) with layers off / on
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nanoml_app.h"
#include "nanoml_layers.h"

using namespace nanoml;

static uint8_t g_data[1 << 20];
static char g_hex[(2 << 20) + 2];

static size_t read_hex(uint8_t* out) {
  if (scanf("%2097151s", g_hex) != 1) exit(2);
  if (!strcmp(g_hex, "-")) return 0;
  const size_t n = strlen(g_hex) / 2;
  for (size_t i = 0; i < n; ++i) {
    unsigned v;
    if (sscanf(g_hex + 2 * i, "%2x", &v) != 1) exit(2);
    out[i] = static_cast<uint8_t>(v);
  }
  return n;
}

static void to_stdout(const char* line, size_t len, void*) { fwrite(line, 1, len, stdout); }

int main() {
  char cmd[16];
  static char line[4096];
  while (scanf("%15s", cmd) == 1) {
    if (!strcmp(cmd, "crc")) {
      const size_t n = read_hex(g_data);
      // in two parts: the continuation must give the same value
      const uint32_t a = crc32(g_data, n / 3);
      printf("%lu %lu\n", (unsigned long)crc32(g_data, n),
             (unsigned long)crc32(g_data + n / 3, n - n / 3, a));
    } else if (!strcmp(cmd, "dump")) {
      size_t cap;
      unsigned frame, op, out, nd, quant;
      int tensor, zp;
      float scale;
      char name[64], dtype[16], why[16];
      int dims[8];
      if (scanf("%zu %u %u %u %63s %d %15s %u", &cap, &frame, &op, &out, name, &tensor, dtype,
                &nd) != 8 || nd > 8 || cap > sizeof(line))
        return 2;
      for (unsigned i = 0; i < nd; ++i)
        if (scanf("%d", &dims[i]) != 1) return 2;
      if (scanf("%u %f %d %15s", &quant, &scale, &zp, why) != 4) return 2;
      const size_t n = read_hex(g_data);
      LayerTensor t = {op, out, name, tensor, dtype, dims, static_cast<int>(nd), quant != 0,
                       scale, zp, n ? g_data : nullptr, n, strcmp(why, "-") ? why : nullptr};
      LineWriter w(line, cap);
      const size_t lines = write_layer(w, frame, t, to_stdout, nullptr);
      printf("lines=%zu\n", lines);
    } else if (!strcmp(cmd, "end")) {
      unsigned frame, ops, sent, nested;
      if (scanf("%u %u %u %u", &frame, &ops, &sent, &nested) != 4) return 2;
      LineWriter w(line, sizeof(line));
      const size_t len = write_layer_end(w, frame, ops, sent, nested);
      fwrite(w.data(), 1, len, stdout);
    } else if (!strcmp(cmd, "track")) {
      LayerTracker tr;
      tr.start(7);
      uint32_t handles[64];
      size_t depth = 0;
      char ev[4];
      while (scanf("%3s", ev) == 1 && strcmp(ev, ".")) {
        if (ev[0] == 'b' && depth < 64) {
          handles[depth++] = tr.begin();
        } else if (ev[0] == 'e' && depth > 0) {
          printf("%ld ", (long)tr.end(handles[--depth]));
        }
      }
      printf("ops=%lu nested=%lu\n", (unsigned long)tr.ops(), (unsigned long)tr.nested());
    } else if (!strcmp(cmd, "hello")) {   // hello <layers 0|1>: write_hello of nanoml_app
      int layers;
      if (scanf("%d", &layers) != 1) return 2;
      int8_t in[4];
      int dims[2] = {1, 4};
      TensorInfo t = {kTypeInt8, dims, 2, 0.5f, 0, reinterpret_cast<uint8_t*>(in), sizeof(in)};
      const char* ops[] = {"FULLY_CONNECTED"};
      DeviceInfo d = {"nanoml-test", "0123456789ab", "nano33ble_sense", "chirale_2.0.0",
                      "serial", 4096, 1234, ops, 1, &t, 1, &t, 1};
      LineWriter w(line, sizeof(line));
      const size_t len = write_hello(w, d, layers != 0);
      fwrite(w.data(), 1, len, stdout);
    } else {
      return 2;
    }
  }
  return 0;
}
