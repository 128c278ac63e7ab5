// A content-addressed store of memory slots: compress a context once, answer from its slots
// many times, from any client. The key of a context is a hash of its token ids together with
// what makes slots mean something (the base model's and the adapter's fingerprints, k and the
// compression rate), so the same text sent twice is one entry and slots never cross adapters.
//
// Two tiers: an in-memory LRU bounded in bytes, and an optional folder of slot files
// (save_slots: atomic, fingerprinted) that survives a restart and is read lazily, on the first
// get() of a key that memory does not hold. Thread-safe: every member may be called from any
// thread.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "icae/util/byte_lru.h"

namespace icae {

class Icae;

struct SlotStoreOptions {
  int64_t max_bytes = int64_t{512} << 20;  // memory tier; 0 keeps nothing in memory
  std::string dir;                         // disk tier folder ("" : memory only); created if absent
};

struct SlotStoreStats {
  int64_t hits = 0;         // get() answered from memory
  int64_t disk_hits = 0;    // get() answered by reading a slot file
  int64_t misses = 0;       // get() found nothing
  int64_t evictions = 0;    // entries dropped from memory to stay under max_bytes
  int64_t entries = 0;      // now in memory
  int64_t bytes = 0;        // now in memory
};

struct StoredSlots {
  at::Tensor slots;            // [n k, H], the model's dtype and device
  int64_t context_tokens = 0;
};

class SlotStore {
 public:
  // icae: the adapter (and through it the base model) whose slots this store holds; it must
  // outlive the store.
  SlotStore(const Icae& icae, SlotStoreOptions options = {});

  // The key of a context: 32 hex digits.
  std::string key_for(const std::vector<int64_t>& context_ids) const;
  // True for strings key_for() can return: what a client sends is checked with this before it
  // names a file.
  static bool is_key(const std::string& key);

  std::optional<StoredSlots> get(const std::string& key);
  // Stores (or refreshes) an entry; with a folder, also writes KEY.slots.safetensors unless it is
  // there already.
  void put(const std::string& key, const at::Tensor& slots, int64_t context_tokens);

  SlotStoreStats stats() const;
  const SlotStoreOptions& options() const { return options_; }

 private:
  std::string path_for(const std::string& key) const;
  void insert_locked(const std::string& key, const StoredSlots& value);

  const Icae& icae_;
  SlotStoreOptions options_;
  std::string salt_;  // fingerprints, k and rate: mixed into every key

  mutable std::mutex mutex_;
  std::mutex disk_mutex_;  // serialises slot-file writes
  ByteLru<std::string, StoredSlots> memory_;  // the memory tier
  SlotStoreStats stats_;
};

}  // namespace icae
