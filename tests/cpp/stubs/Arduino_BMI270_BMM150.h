// Stub (declarations only) of Arduino_BMI270_BMM150's IMU object (the library's documented API:
// g, degrees/s, uT).
#ifndef NANOML_STUB_ARDUINO_BMI270_BMM150_H_
#define NANOML_STUB_ARDUINO_BMI270_BMM150_H_
class StubIMUClass {
 public:
  int begin();
  void end();
  int accelerationAvailable();
  int readAcceleration(float& x, float& y, float& z);
  int gyroscopeAvailable();
  int readGyroscope(float& x, float& y, float& z);
  int magneticFieldAvailable();
  int readMagneticField(float& x, float& y, float& z);
  float accelerationSampleRate();
};
extern StubIMUClass IMU;
#endif
