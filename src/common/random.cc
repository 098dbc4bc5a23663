#include "common/random.h"

#include <climits>

#include <openssl/rand.h>
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
  // OpenSSL's per-thread DRBG (seeded and reseeded from the kernel, fork-safe): no system call
  // per draw, where libsodium's randombytes_buf makes one (two per purchase: id and nonce).
  if (out.size() <= INT_MAX && RAND_bytes(out.data(), static_cast<int>(out.size())) == 1) return;
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
