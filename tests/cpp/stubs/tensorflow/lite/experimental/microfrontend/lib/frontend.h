// Stub (declarations only) of TFLM's micro front end API
// (tensorflow/lite/experimental/microfrontend/lib/frontend.h): the state is
// opaque here; the real header defines its members.
#ifndef NANOML_STUB_MICROFRONTEND_FRONTEND_H_
#define NANOML_STUB_MICROFRONTEND_FRONTEND_H_
#include <stddef.h>
#include <stdint.h>
extern "C" {
struct FrontendState {
  void* opaque[64];
};
struct FrontendOutput {
  const uint16_t* values;
  size_t size;
};
struct FrontendOutput FrontendProcessSamples(struct FrontendState* state, const int16_t* samples,
                                             size_t num_samples, size_t* num_samples_read);
void FrontendReset(struct FrontendState* state);
}
#endif
