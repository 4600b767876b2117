// Stub (declarations only) of the IMU object both Nano 33 BLE Sense IMU libraries (Arduino_LSM9DS1, Arduino_BMI270_BMM150) define (the library's documented API:
// g, degrees/s, uT).
#ifndef NANOML_STUB_IMU_H_
#define NANOML_STUB_IMU_H_
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
