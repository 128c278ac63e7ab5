// Keys and values of past positions, preallocated once per (batch, max length) and reused:
// reset() starts a new sequence without freeing memory.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "icae/model/config.h"

namespace icae {

struct KVCacheOptions {
  int64_t batch = 1;
  int64_t max_length = 0;  // positions the cache can hold
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
};

class KVCache {
 public:
  KVCache(const ModelConfig& config, const KVCacheOptions& options);

  int64_t length() const { return length_; }       // positions already stored
  int64_t capacity() const { return max_length_; }
  int64_t batch() const { return batch_; }
  void reset() { length_ = 0; }

  // Writes the new keys/values [B, Hkv, T, D] of one layer after the stored ones and returns
  // views of all of them [B, Hkv, length + T, D]. Call for every layer, then advance(T).
  std::pair<at::Tensor, at::Tensor> append(int64_t layer, const at::Tensor& k, const at::Tensor& v);
  void advance(int64_t tokens) { length_ += tokens; }
  // Keeps the first n positions (e.g. to reuse a cached prefix).
  void truncate(int64_t n);
  // The whole buffers [B, Hkv, capacity, D] of one layer (for kernels that write in place).
  const at::Tensor& key_buffer(int64_t layer) const { return keys_.at(layer); }
  const at::Tensor& value_buffer(int64_t layer) const { return values_.at(layer); }

 private:
  std::vector<at::Tensor> keys_, values_;  // per layer [B, Hkv, max_length, D]
  int64_t length_ = 0, max_length_ = 0, batch_ = 1;
};

}  // namespace icae
