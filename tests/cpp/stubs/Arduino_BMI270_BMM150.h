// Stub: Arduino_BMI270_BMM150 declares the IMU object of nanoml_stub_imu.h (declarations only).
#include "nanoml_stub_imu.h"
