#include "icae/server/slot_store.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <sys/stat.h>

#include "icae/core/icae.h"
#include "icae/infer/fingerprint.h"
#include "icae/infer/slot_file.h"
#include "icae/util/error.h"
#include "icae/util/hash128.h"

namespace icae {

namespace {

int64_t tensor_bytes(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

}  // namespace

SlotStore::SlotStore(const Icae& icae, SlotStoreOptions options)
    : icae_(icae), options_(std::move(options)), memory_(options_.max_bytes) {
  ICAE_CHECK(options_.max_bytes >= 0, ErrorKind::Usage, "slot store: max_bytes must be >= 0");
  char rate[32];
  std::snprintf(rate, sizeof rate, "%.17g", icae_.config().compression_rate);
  salt_ = icae_.base().fingerprint() + "/" + adapter_fingerprint(icae_) + "/k" +
          std::to_string(icae_.config().mem_size) + "/r" + rate;
  if (!options_.dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options_.dir, ec);
    struct stat st {};
    ICAE_CHECK(::stat(options_.dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode), ErrorKind::Io,
               options_.dir + ": cannot create the slot folder" + (ec ? ": " + ec.message() : std::string()));
  }
}

// Slot keys are Hash128 (util/hash128.h) of the salt and the ids. A client able to craft
// collisions could alias another client's context, which is one more reason the server listens
// on loopback unless told otherwise.
std::string SlotStore::key_for(const std::vector<int64_t>& ids) const {
  Hash128 h;
  h.bytes(salt_.data(), salt_.size());
  h.value(ids.size());
  for (int64_t id : ids) h.value(static_cast<uint64_t>(id));
  return h.hex();
}

bool SlotStore::is_key(const std::string& key) {
  if (key.size() != 32) return false;
  for (char c : key)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::string SlotStore::path_for(const std::string& key) const { return options_.dir + "/" + key + ".slots.safetensors"; }

void SlotStore::insert_locked(const std::string& key, const StoredSlots& value) {
  // An entry bigger than the whole tier is not kept in memory: disk only (or nowhere).
  stats_.evictions += memory_.put(key, value, tensor_bytes(value.slots));
  stats_.bytes = memory_.bytes();
  stats_.entries = memory_.size();
}

std::optional<StoredSlots> SlotStore::get(const std::string& key) {
  if (!is_key(key)) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.misses;
    return std::nullopt;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (const StoredSlots* v = memory_.find(key)) {  // now the most recently used
      ++stats_.hits;
      return *v;
    }
  }
  // Disk, outside the lock: reading a file must not stall the memory tier for other threads.
  if (!options_.dir.empty()) {
    const std::string path = path_for(key);
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
      // load_slots checks the fingerprints: a folder shared with another model or adapter
      // fails loudly instead of answering from foreign slots.
      Slots f = load_slots(path, icae_);
      StoredSlots v{f.tensor, f.context_tokens};
      std::lock_guard<std::mutex> lock(mutex_);
      ++stats_.disk_hits;
      insert_locked(key, v);
      return v;
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.misses;
  return std::nullopt;
}

void SlotStore::put(const std::string& key, const at::Tensor& slots, int64_t context_tokens) {
  ICAE_CHECK(is_key(key), ErrorKind::Internal, "slot store: '" + key + "' is not a slot key");
  ICAE_CHECK(slots.defined() && (slots.dim() == 2 || slots.dim() == 5), ErrorKind::Internal,
             "slot store: slots must be [n, H] or [n, layers, 2, kv_heads, head_dim]");
  StoredSlots v{slots.detach(), context_tokens};
  if (!options_.dir.empty()) {
    const std::string path = path_for(key);
    struct stat st {};
    // Content-addressed: a file under this key already holds these slots.
    if (::stat(path.c_str(), &st) != 0) {
      std::lock_guard<std::mutex> lock(disk_mutex_);  // one writer per temporary file name
      save_slots(path, icae_, v.slots, context_tokens);
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  insert_locked(key, v);
}

SlotStoreStats SlotStore::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

}  // namespace icae
