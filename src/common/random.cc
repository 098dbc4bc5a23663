#include "common/random.h"

#include <sodium.h>

#include "common/encoding.h"

namespace meridian {

std::string Random::Bytes(size_t n) {
  std::string s(n, '\0');
  Fill({reinterpret_cast<uint8_t*>(s.data()), n});
  return s;
}

std::string Random::Hex(size_t n) { return HexEncode(Bytes(n)); }

void SystemRandom::Fill(std::span<uint8_t> out) {
  // The kernel's generator (getrandom): measured cheaper per purchase than OpenSSL 3's DRBG,
  // whose every draw re-initialises its cipher context.
  randombytes_buf(out.data(), out.size());
}

Random& SystemRandom::Instance() {
  static SystemRandom r;
  return r;
}

void SeededRandom::Fill(std::span<uint8_t> out) {
  std::lock_guard lock(mu_);
  for (auto& b : out) b = static_cast<uint8_t>(gen_());
}

}  // namespace meridian
