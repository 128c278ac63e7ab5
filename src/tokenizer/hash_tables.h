// Internal: small open-addressing hash tables for the tokenizer's hot paths
// (token string -> id, merge pair -> rank, word -> cached ids). Not thread-safe for writes.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace icae::tok::detail {

inline uint64_t mix64(uint64_t x) {
  x ^= x >> 32;
  x *= 0xD6E8FEB86659FD93ull;
  x ^= x >> 32;
  x *= 0xD6E8FEB86659FD93ull;
  x ^= x >> 32;
  return x;
}

inline uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (s.size() * 0xFF51AFD7ED558CCDull);
  const char* p = s.data();
  size_t n = s.size();
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0x9FB21C651E98DF25ull;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * 0x9FB21C651E98DF25ull;
  }
  return mix64(h);
}

// Byte string -> V. Keys are copied into one arena. Later insertions of a key overwrite.
template <class V>
class StringTable {
 public:
  explicit StringTable(size_t expected = 16) { rehash(capacity_for(expected)); }

  // Returns a pointer to the value, or nullptr.
  const V* find(std::string_view key) const { return find_hashed(key, hash_bytes(key)); }
  const V* find_hashed(std::string_view key, uint64_t h) const {
    size_t i = h & mask_;
    while (true) {
      const Slot& s = slots_[i];
      if (s.len == kEmpty) return nullptr;
      if (s.hash == h && s.len == key.size() && std::memcmp(arena_.data() + s.off, key.data(), key.size()) == 0)
        return &s.value;
      i = (i + 1) & mask_;
    }
  }
  void insert(std::string_view key, const V& value) { insert_hashed(key, hash_bytes(key), value); }
  void insert_hashed(std::string_view key, uint64_t h, const V& value) {
    if ((count_ + 1) * 2 > slots_.size()) rehash(slots_.size() * 2);
    size_t i = h & mask_;
    while (true) {
      Slot& s = slots_[i];
      if (s.len == kEmpty) {
        s.hash = h;
        s.off = arena_.size();
        s.len = static_cast<uint32_t>(key.size());
        s.value = value;
        arena_.append(key.data(), key.size());
        ++count_;
        return;
      }
      if (s.hash == h && s.len == key.size() && std::memcmp(arena_.data() + s.off, key.data(), key.size()) == 0) {
        s.value = value;
        return;
      }
      i = (i + 1) & mask_;
    }
  }
  size_t size() const { return count_; }
  size_t arena_bytes() const { return arena_.size(); }
  void clear() {
    arena_.clear();
    count_ = 0;
    for (auto& s : slots_) s.len = kEmpty;
  }

 private:
  static constexpr uint32_t kEmpty = 0xFFFFFFFFu;
  struct Slot {
    uint64_t hash = 0;
    size_t off = 0;
    uint32_t len = kEmpty;
    V value{};
  };
  static size_t capacity_for(size_t n) {
    size_t c = 16;
    while (c < n * 2) c <<= 1;
    return c;
  }
  void rehash(size_t cap) {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
    for (const Slot& s : old) {
      if (s.len == kEmpty) continue;
      size_t i = s.hash & mask_;
      while (slots_[i].len != kEmpty) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  std::string arena_;
  size_t mask_ = 0;
  size_t count_ = 0;
};

// (left id, right id) -> (rank, merged id), for BPE merges.
class PairTable {
 public:
  struct Merge {
    uint32_t rank;
    int32_t id;
  };
  explicit PairTable(size_t expected = 16) {
    size_t c = 16;
    while (c < expected * 2) c <<= 1;
    slots_.assign(c, Slot{});
    mask_ = c - 1;
  }
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  const Merge* find(int32_t a, int32_t b) const {
    const uint64_t k = key(a, b);
    size_t i = mix64(k) & mask_;
    while (true) {
      const Slot& s = slots_[i];
      if (s.merge.id < 0) return nullptr;
      if (s.key == k) return &s.merge;
      i = (i + 1) & mask_;
    }
  }
  void insert(int32_t a, int32_t b, Merge m) {
    if ((count_ + 1) * 2 > slots_.size()) grow();
    const uint64_t k = key(a, b);
    size_t i = mix64(k) & mask_;
    while (true) {
      Slot& s = slots_[i];
      if (s.merge.id < 0) {
        s.key = k;
        s.merge = m;
        ++count_;
        return;
      }
      if (s.key == k) {
        s.merge = m;
        return;
      }
      i = (i + 1) & mask_;
    }
  }
  size_t size() const { return count_; }

 private:
  struct Slot {
    uint64_t key = 0;
    Merge merge{0, -1};
  };
  void grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.merge.id < 0) continue;
      size_t i = mix64(s.key) & mask_;
      while (slots_[i].merge.id >= 0) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t count_ = 0;
};

}  // namespace icae::tok::detail
