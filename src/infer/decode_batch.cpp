#include "icae/infer/decode_batch.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "icae/core/icae.h"
#include "icae/model/kv_cache.h"
#include "icae/util/error.h"
#include "icae/util/hash128.h"

namespace icae {

// One row: its decoder (sampler, budget, stops, streaming; as in Session::run) and its own cache.
struct DecodeBatch::Row {
  uint64_t handle = 0;
  std::unique_ptr<KVCache> cache;
  RowDecoder decoder;
  int64_t prefix_tokens = 0;
  explicit Row(RowDecoderOptions o) : decoder(std::move(o)) {}
};

DecodeBatch::DecodeBatch(Session& session, const DecodeBatchOptions& options)
    : session_(session), options_(options), prefixes_(options.prefix_cache_bytes) {
  ICAE_CHECK(options.prefix_cache_bytes >= 0, ErrorKind::Usage, "prefix_cache_bytes must be >= 0");
}

namespace {
// Positions of the row's prefix up to and including its last slot placeholder (0: no slots, or
// nothing after them — the last position's logits are needed, so there is nothing to split).
int64_t slot_prefix_length(const Session& session, const DecodeRow& row) {
  if (!session.has_adapter() || !row.slots.defined() || row.slots.size(0) == 0) return 0;
  const int64_t placeholder = session.icae().ids().mem_first;
  for (int64_t i = static_cast<int64_t>(row.prefix.size()) - 1; i >= 0; --i)
    if (row.prefix[i] == placeholder) return i + 1 < static_cast<int64_t>(row.prefix.size()) ? i + 1 : 0;
  return 0;
}

// The cache key of a prefix: a hash of its shape, type and bytes (read on the host: a copy of a
// few hundred KB per row on a GPU).
std::string prefix_key(const at::Tensor& head) {
  const at::Tensor h = head.to(at::kCPU).contiguous();
  Hash128 k;
  k.value(static_cast<uint64_t>(h.size(0)));
  k.value(static_cast<uint64_t>(h.size(1)));
  k.value(static_cast<uint64_t>(h.scalar_type()));
  k.bytes(h.data_ptr(), h.nbytes());
  return k.hex();
}
}  // namespace

void DecodeBatch::fill_prefix(const at::Tensor& head, KVCache& cache) {
  const Transformer& base = session_.base();
  const int64_t layers = base.config().num_hidden_layers, length = head.size(0);
  const std::string key = options_.prefix_cache_bytes > 0 ? prefix_key(head) : std::string();
  if (const Prefix* p = key.empty() ? nullptr : prefixes_.find(key)) {
    // Exact on a hit: the embeddings are compared, not only their hash.
    if (p->embeds.sizes() == head.sizes() && at::equal(p->embeds, head)) {
      for (int64_t l = 0; l < layers; ++l) cache.append(l, p->keys[l], p->values[l]);
      cache.advance(length);
      ++prefix_hits_;
      return;
    }
  }
  ++prefix_misses_;
  ForwardOptions fo;
  fo.cache = &cache;
  fo.compute_logits = false;
  ForwardInput in;
  in.inputs_embeds = head.unsqueeze(0);  // [1, length, H]
  base.forward(in, fo);
  if (key.empty()) return;
  Prefix p;
  p.embeds = head.clone();
  int64_t bytes = static_cast<int64_t>(p.embeds.nbytes());
  for (int64_t l = 0; l < layers; ++l) {
    p.keys.push_back(cache.key_buffer(l).narrow(2, 0, length).clone());
    p.values.push_back(cache.value_buffer(l).narrow(2, 0, length).clone());
    bytes += static_cast<int64_t>(p.keys.back().nbytes() + p.values.back().nbytes());
  }
  prefixes_.put(key, std::move(p), bytes);  // not kept when bigger than the whole bound
}
DecodeBatch::~DecodeBatch() = default;

uint64_t DecodeBatch::join(const DecodeRow& row, const SamplingOptions& sampling, TokenCallback on_token) {
  const SessionOptions& so = session_.options();
  RowDecoderOptions ro;
  ro.sampling = sampling;
  ro.max_new_tokens = row.max_new_tokens.value_or(so.max_new_tokens);
  std::vector<int64_t> stops = so.use_model_stop_ids ? session_.model().stop_ids : std::vector<int64_t>{};
  stops.insert(stops.end(), so.stop_ids.begin(), so.stop_ids.end());
  ro.stop_ids = row.stop_ids.value_or(stops);
  ro.on_token = std::move(on_token);
  const int64_t budget = ro.max_new_tokens;
  auto r = std::make_unique<Row>(std::move(ro));
  r->handle = next_handle_++;
  const DecoderInput prefill = session_.decoder_input({row});
  r->prefix_tokens = static_cast<int64_t>(row.prefix.size());
  const uint64_t handle = r->handle;
  if (r->decoder.done()) {  // a budget of 0: nothing to decode, as Session::run: no prefill either
    Completion c = r->decoder.take();
    c.prefix_tokens = r->prefix_tokens;
    finished_.push_back({handle, std::move(c)});
    return handle;
  }
  const Transformer& base = session_.base();
  KVCacheOptions co;
  co.batch = 1;
  co.max_length = prefill.cache_positions() + budget;
  co.device = base.device();
  co.dtype = base.dtype();
  r->cache = std::make_unique<KVCache>(base.config(), co);
  ForwardOptions fo;
  fo.cache = r->cache.get();
  fo.last_position_only = true;
  at::Tensor logits;
  if (prefill.input.kv_prefix.defined()) {
    // Key/value slots are already the keys and values a cached prefix would hold: their prefill
    // is a rotation, nothing worth reusing.
    logits = base.forward(prefill.input, fo).logits.view({1, -1});
  } else {
    const at::Tensor embeds = prefill.input.inputs_embeds.squeeze(0).to(base.dtype());  // [T, H]
    const int64_t head = slot_prefix_length(session_, row);
    if (head > 0) fill_prefix(embeds.narrow(0, 0, head), *r->cache);
    ForwardInput in;
    in.inputs_embeds = embeds.narrow(0, head, embeds.size(0) - head).unsqueeze(0);  // [1, T - head, H]
    logits = base.forward(in, fo).logits.view({1, -1});
  }
  r->decoder.accept(logits[0]);
  rows_.push_back(std::move(r));
  retire_done();
  return handle;
}

void DecodeBatch::step() {
  if (rows_.empty()) return;
  std::vector<int64_t> ids;
  std::vector<KVCache*> caches;
  for (const auto& r : rows_) {
    ids.push_back(r->decoder.last());
    caches.push_back(r->cache.get());
  }
  at::Tensor logits = session_.base().decode_rows(ids, caches);  // [B, V]
  for (size_t i = 0; i < rows_.size(); ++i) rows_[i]->decoder.accept(logits[static_cast<int64_t>(i)]);
  retire_done();
}

void DecodeBatch::end(uint64_t handle, const std::string& stop_reason) {
  for (auto& r : rows_)
    if (r->handle == handle) r->decoder.end(stop_reason);
  retire_done();
}

void DecodeBatch::retire_done() {
  auto keep = std::stable_partition(rows_.begin(), rows_.end(), [](const auto& r) { return !r->decoder.done(); });
  for (auto it = keep; it != rows_.end(); ++it) {
    Row& r = **it;
    Completion c = r.decoder.take();
    c.prefix_tokens = r.prefix_tokens;
    c.text = session_.detokenize(c.ids);
    finished_.push_back({r.handle, std::move(c)});
  }
  rows_.erase(keep, rows_.end());  // frees their caches
}

std::vector<DecodeBatch::Finished> DecodeBatch::take_finished() {
  std::vector<Finished> out;
  out.swap(finished_);
  return out;
}

std::vector<uint64_t> DecodeBatch::handles() const {
  std::vector<uint64_t> out;
  for (const auto& r : rows_) out.push_back(r->handle);
  return out;
}

int64_t DecodeBatch::kv_bytes() const {
  const ModelConfig& c = session_.base().config();
  int64_t positions = 0;
  for (const auto& r : rows_) positions += r->cache->length();
  return 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * positions *
         static_cast<int64_t>(c10::elementSize(session_.base().dtype()));
}

}  // namespace icae
