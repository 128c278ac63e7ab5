// A 128-bit content key from two independent 64-bit hashes (FNV-1a over bytes; a splitmix64
// chain over whole values): accidental collisions are out of reach. Not cryptographic. Used to
// name cached slots and slot prefixes by what they hold.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace icae {

struct Hash128 {
  uint64_t a = 1469598103934665603ull;
  uint64_t b = 0x9e3779b97f4a7c15ull;
  void bytes(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) a = (a ^ p[i]) * 1099511628211ull;
  }
  void value(uint64_t v) {
    bytes(&v, sizeof v);
    uint64_t z = (b += 0x9e3779b97f4a7c15ull) ^ v;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    b = z ^ (z >> 31);
  }
  std::string hex() const {
    char buf[33];
    std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(a),
                  static_cast<unsigned long long>(b));
    return buf;
  }
};

}  // namespace icae
