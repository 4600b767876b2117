// Stub: Arduino_LSM9DS1 declares the IMU object of nanoml_stub_imu.h (declarations only).
#include "nanoml_stub_imu.h"
