// nanoml test source (ours, not from a library): a float fully-connected layer, the
// shape of work a float model's kernels do. tests/test_optimize.py compiles it with the
// flags a generated project gives a float kernel and checks the float arithmetic runs
// on the FPU (vmul.f32 / vfma.f32), not in soft-float routines (__aeabi_fmul, ...).

extern "C" void nanoml_test_fully_connected(const float* input, const float* weights,
                                            const float* bias, float* output,
                                            int in_features, int out_features) {
  for (int o = 0; o < out_features; ++o) {
    float acc = bias[o];
    const float* w = weights + o * in_features;
    for (int i = 0; i < in_features; ++i) {
      acc += input[i] * w[i];
    }
    output[o] = acc > 0.0f ? acc : 0.0f;   // ReLU
  }
}

extern "C" float nanoml_test_scale(float x, float scale, float zero) {
  return x * scale + zero;
}
