// Cortex-M4 cycle counter (DWT CYCCNT) for the profiling firmware.
// Plain register addresses (ARMv7-M Architecture Reference Manual, C1.8):
// no CMSIS header needed. On anything but an ARM target it reads 0.
#ifndef NANOML_CYCLES_H_
#define NANOML_CYCLES_H_

#include <stdint.h>

namespace nanoml {

#if defined(__arm__)
namespace detail {
constexpr uintptr_t kDemcr = 0xE000EDFCu;      // Debug Exception and Monitor Control
constexpr uint32_t kDemcrTrcena = 1u << 24;    // enables the DWT unit
constexpr uintptr_t kDwtCtrl = 0xE0001000u;
constexpr uint32_t kDwtCtrlCyccntena = 1u;
constexpr uintptr_t kDwtCyccnt = 0xE0001004u;
inline volatile uint32_t& reg(uintptr_t addr) { return *reinterpret_cast<volatile uint32_t*>(addr); }
}  // namespace detail

// Starts the counter; true if it runs (some parts lack a DWT cycle counter).
inline bool cycle_counter_enable() {
  detail::reg(detail::kDemcr) |= detail::kDemcrTrcena;
  detail::reg(detail::kDwtCyccnt) = 0;
  detail::reg(detail::kDwtCtrl) |= detail::kDwtCtrlCyccntena;
  const uint32_t a = detail::reg(detail::kDwtCyccnt);
  for (volatile int i = 0; i < 8; ++i) {
  }
  return detail::reg(detail::kDwtCyccnt) != a;
}

inline uint32_t cycle_count() { return detail::reg(detail::kDwtCyccnt); }
#else
inline bool cycle_counter_enable() { return false; }
inline uint32_t cycle_count() { return 0; }
#endif

}  // namespace nanoml

#endif  // NANOML_CYCLES_H_
