// A least-recently-used map bounded in bytes: each entry states its size, and inserting evicts
// from the cold end until the total fits. One implementation for the caches that need it (the
// server's slot store, DecodeBatch's slot-prefix keys and values). Not synchronised: callers
// that share one across threads hold their own lock.
#pragma once
#include <cstdint>
#include <list>
#include <unordered_map>
#include <utility>

namespace icae {

template <typename Key, typename Value, typename Hash = std::hash<Key>>
class ByteLru {
 public:
  explicit ByteLru(int64_t max_bytes = 0) : max_bytes_(max_bytes) {}

  // The entry, now the most recently used; nullptr when absent.
  Value* find(const Key& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    entries_.splice(entries_.begin(), entries_, it->second);
    return &it->second->value;
  }

  // Stores (or replaces) an entry of `bytes` and evicts the least recently used ones until the
  // total fits; returns how many were evicted. An entry larger than the whole bound is not kept
  // (a replaced one is still removed).
  int64_t put(const Key& key, Value value, int64_t bytes) {
    erase(key);
    if (bytes > max_bytes_) return 0;
    entries_.push_front(Entry{key, std::move(value), bytes});
    index_[key] = entries_.begin();
    bytes_ += bytes;
    int64_t evicted = 0;
    while (bytes_ > max_bytes_ && !entries_.empty()) {
      bytes_ -= entries_.back().bytes;
      index_.erase(entries_.back().key);
      entries_.pop_back();
      ++evicted;
    }
    return evicted;
  }

  void erase(const Key& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return;
    bytes_ -= it->second->bytes;
    entries_.erase(it->second);
    index_.erase(it);
  }

  int64_t bytes() const { return bytes_; }
  int64_t size() const { return static_cast<int64_t>(entries_.size()); }
  int64_t max_bytes() const { return max_bytes_; }

 private:
  struct Entry {
    Key key;
    Value value;
    int64_t bytes = 0;
  };
  int64_t max_bytes_ = 0, bytes_ = 0;
  std::list<Entry> entries_;  // front: most recently used
  std::unordered_map<Key, typename std::list<Entry>::iterator, Hash> index_;
};

}  // namespace icae
