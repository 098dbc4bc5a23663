// Injected randomness: the system CSPRNG in production, a seeded generator in tests.
#pragma once

#include <cstdint>
#include <mutex>
#include <random>
#include <span>
#include <string>

namespace meridian {

class Random {
 public:
  virtual ~Random() = default;
  virtual void Fill(std::span<uint8_t> out) = 0;
  std::string Bytes(size_t n);
  // n random bytes as lowercase hex (2n characters).
  std::string Hex(size_t n);
};

// libsodium's randombytes (the kernel CSPRNG).
class SystemRandom final : public Random {
 public:
  void Fill(std::span<uint8_t> out) override;
  static Random& Instance();
};

// Deterministic, for tests only: never used for keys or tokens outside tests.
class SeededRandom final : public Random {
 public:
  explicit SeededRandom(uint64_t seed) : gen_(seed) {}
  void Fill(std::span<uint8_t> out) override;

 private:
  std::mutex mu_;
  std::mt19937_64 gen_;
};

}  // namespace meridian
