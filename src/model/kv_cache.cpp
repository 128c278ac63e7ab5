#include "icae/model/kv_cache.h"

#include <ATen/ATen.h>

#include "icae/util/error.h"

namespace icae {

KVCache::KVCache(const ModelConfig& config, const KVCacheOptions& options)
    : max_length_(options.max_length), batch_(options.batch) {
  ICAE_CHECK(options.max_length > 0 && options.batch > 0, ErrorKind::Usage,
             "KV cache needs a positive batch and max_length");
  auto opts = at::TensorOptions().device(options.device).dtype(options.dtype);
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    keys_.push_back(at::empty({batch_, config.num_key_value_heads, max_length_, config.head_dim}, opts));
    values_.push_back(at::empty({batch_, config.num_key_value_heads, max_length_, config.head_dim}, opts));
  }
}

std::pair<at::Tensor, at::Tensor> KVCache::append(int64_t layer, const at::Tensor& k, const at::Tensor& v) {
  const int64_t t = k.size(2);
  ICAE_CHECK(layer >= 0 && layer < static_cast<int64_t>(keys_.size()), ErrorKind::Internal,
             "KV cache: layer " + std::to_string(layer) + " out of range");
  ICAE_CHECK(k.size(0) == batch_, ErrorKind::Usage,
             "KV cache: batch " + std::to_string(k.size(0)) + " but the cache holds " + std::to_string(batch_));
  ICAE_CHECK(length_ + t <= max_length_, ErrorKind::Usage,
             "KV cache full: " + std::to_string(length_) + " + " + std::to_string(t) + " positions > capacity " +
                 std::to_string(max_length_));
  keys_[layer].narrow(2, length_, t).copy_(k);
  values_[layer].narrow(2, length_, t).copy_(v);
  return {keys_[layer].narrow(2, 0, length_ + t), values_[layer].narrow(2, 0, length_ + t)};
}

void KVCache::truncate(int64_t n) {
  ICAE_CHECK(n >= 0 && n <= length_, ErrorKind::Usage, "KV cache: cannot truncate to " + std::to_string(n));
  length_ = n;
}

}  // namespace icae
