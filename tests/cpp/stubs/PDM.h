// Stub (declarations only) of the mbed core's PDM library (libraries/PDM/src/PDM.h API).
#ifndef NANOML_STUB_PDM_H_
#define NANOML_STUB_PDM_H_
class PDMClass {
 public:
  int begin(int channels, int sampleRate);
  void end();
  int available();
  int read(void* buffer, size_t size);
  void onReceive(void (*)(void));
  void setGain(int gain);
  void setBufferSize(int bufferSize);
};
extern PDMClass PDM;
#endif
