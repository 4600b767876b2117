// Stub (declarations only) of the Arduino core API the generated input sources use.
#ifndef NANOML_STUB_ARDUINO_H_
#define NANOML_STUB_ARDUINO_H_
#include <stddef.h>
#include <stdint.h>
extern "C" {
unsigned long micros(void);
unsigned long millis(void);
void delay(unsigned long ms);
}
#endif
